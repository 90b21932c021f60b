"""A Hugging Face cache in which the hub ids the docs use name the project's fixture models.

The docs are written for real users, with real hub ids (``Embedder("BAAI/bge-small-en-v1.5")``).
Tests cannot download, so the runner points ``HF_HOME`` at a cache laid out as huggingface_hub
lays one out (``hub/models--ORG--NAME/{refs/main,snapshots/<commit>/...}``) whose snapshots are the
fixture folders. With ``HF_HUB_OFFLINE=1`` the hub id then loads the fixture, through the same code
path a user's cached model takes, and the registry sees the real model name in the snapshot path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from _llm_support import build_causal_reranker

from bge_rag.testing import add_m3_heads, build_decoder_model, build_dense_model, build_reranker_model, build_xlmr_model

_COMMIT = "0" * 40

#: What each kind of fixture is, and how to build it into a folder.
BUILDERS: dict[str, Callable[[Path], Path]] = {
    "dense MiniLM (real weights, 384 dims)": build_dense_model,
    "BGE-M3 heads on a tiny random XLM-R": lambda dest: add_m3_heads(build_xlmr_model(dest)),
    "cross-encoder (MiniLM, random one-logit head)": build_reranker_model,
    "tiny random Gemma causal LM": lambda dest: build_causal_reranker(dest, "gemma"),
    "tiny random Mistral decoder": lambda dest: build_decoder_model(dest, "mistral"),
}

#: The hub ids a docs snippet may load, and the fixture each one stands for.
HUB_FIXTURES: dict[str, str] = {
    "BAAI/bge-small-en-v1.5": "dense MiniLM (real weights, 384 dims)",
    "BAAI/bge-base-en-v1.5": "dense MiniLM (real weights, 384 dims)",
    "BAAI/bge-large-en-v1.5": "dense MiniLM (real weights, 384 dims)",
    "BAAI/bge-small-zh-v1.5": "dense MiniLM (real weights, 384 dims)",
    "BAAI/bge-m3": "BGE-M3 heads on a tiny random XLM-R",
    "BAAI/bge-reranker-base": "cross-encoder (MiniLM, random one-logit head)",
    "BAAI/bge-reranker-large": "cross-encoder (MiniLM, random one-logit head)",
    "BAAI/bge-reranker-v2-m3": "cross-encoder (MiniLM, random one-logit head)",
    "BAAI/bge-reranker-v2-gemma": "tiny random Gemma causal LM",
    "BAAI/bge-en-icl": "tiny random Mistral decoder",
}


def build_hub_cache(root: Path) -> Path:
    """Write the fixtures under ``root`` and a cache naming them; returns the ``HF_HOME`` to use."""
    built = {kind: build(root / "fixtures" / f"kind{n}") for n, (kind, build) in enumerate(BUILDERS.items())}
    hub = root / "home" / "hub"
    for repo, kind in HUB_FIXTURES.items():
        entry = hub / f"models--{repo.replace('/', '--')}"
        snapshot = entry / "snapshots" / _COMMIT
        snapshot.mkdir(parents=True)
        for file in built[kind].iterdir():
            if file.is_file():
                os.symlink(file, snapshot / file.name)
        (entry / "refs").mkdir()
        (entry / "refs" / "main").write_text(_COMMIT)
    return root / "home"
