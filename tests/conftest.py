"""Shared test setup: no hub, fixture models built once per run, FlagEmbedding as oracle.

The network is blocked by pytest-socket (``addopts`` in pyproject.toml): connections to anything
but loopback and Unix sockets raise ``SocketConnectBlockedError``.
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub or transformers: the hub is never contacted in tests.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys
import types

import pytest

from bge_core.checks import transformers_version
from bge_rag.sample_data import python_docs_paragraphs
from bge_rag.testing import FixtureModels, build_fixture_models


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> FixtureModels:
    """Model folders built from the real MiniLM weights, once per test run."""
    return build_fixture_models(tmp_path_factory.mktemp("models"))


# Files named test_*_tf4.py need transformers 4.x (FlagEmbedding's own LLM reranker model classes,
# sentence-transformers 5.x): ./dev.sh runs them in .venv-tf4 (its TF4_TESTS list), never under 5.
# Files named test_*_tf446.py need transformers 4.46 exactly (the lightweight LLM reranker's shipped
# code): ./dev.sh runs them in .venv-tf446, and no other environment collects them.
collect_ignore_glob = [
    *(["*/test_*_tf4.py"] if transformers_version() >= (5, 0) else []),
    *([] if transformers_version() == (4, 46) else ["*/test_*_tf446.py"]),
]


def import_flag_embedding() -> types.ModuleType:
    """Import FlagEmbedding (the parity oracle): unpatched under transformers 4.x.

    Under transformers 5 only: FlagEmbedding 1.4.2 imports ``transformers.modeling_attn_mask_utils``
    for its MiniCPM layer-wise LLM reranker, and transformers 5 removed that module. A stand-in
    module lets the package import; nothing the parity tests call under transformers 5 uses it
    (the layer-wise parity tests run in .venv-tf4, where FlagEmbedding imports as released).
    """
    name = "transformers.modeling_attn_mask_utils"
    if transformers_version() < (5, 0):
        import FlagEmbedding

        return FlagEmbedding
    try:
        __import__(name)
    except ImportError:
        stand_in = types.ModuleType(name)

        def _unavailable(*_args, **_kwargs):
            raise NotImplementedError(f"{name} is not available in this transformers version")

        for attr in (
            "AttentionMaskConverter",
            "_prepare_4d_attention_mask",
            "_prepare_4d_causal_attention_mask",
            "_prepare_4d_causal_attention_mask_for_sdpa",
        ):
            setattr(stand_in, attr, _unavailable)
        sys.modules[name] = stand_in
    import FlagEmbedding

    return FlagEmbedding


@pytest.fixture(scope="session")
def flag() -> types.ModuleType:
    return import_flag_embedding()


@pytest.fixture(scope="session")
def paragraphs() -> list[str]:
    """Real English paragraphs of mixed length (the Python language reference)."""
    return python_docs_paragraphs()


@pytest.fixture(scope="session")
def mixed_texts(paragraphs: list[str]) -> list[str]:
    """Real paragraphs plus edge cases: empty, one word, repeated words, non-ASCII, over-long."""
    longest = max(paragraphs, key=len)
    return [
        *paragraphs[:40:2],
        "",
        "bge",
        "the the the the the embedding embedding",
        "Grüße aus Köln — naïve café, 北京欢迎你, emoji 🙂 and tabs\tand\nnewlines",
        " ".join(paragraphs[100:140]),  # far longer than 512 tokens
        longest,
        "UPPER case and MiXeD CaSe",
    ]
