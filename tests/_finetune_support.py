"""Fine-tuning test helpers: dropout-free model copies, training files of real text, state comparison."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout")


def without_dropout(folder: Path, dest: Path) -> Path:
    """A copy of the model folder whose config turns dropout off (so two trainings can be compared)."""
    if not dest.exists():
        shutil.copytree(folder, dest)
        config_path = dest / "config.json"
        config = json.loads(config_path.read_text())
        for key in DROPOUT_KEYS:
            if key in config:
                config[key] = 0.0
        config_path.write_text(json.dumps(config, indent=2))
    return dest


def training_rows(paragraphs: list[str], n: int = 8, negatives: int = 3) -> list[dict]:
    """Lines of real text: a paragraph's opening words as query, the paragraph as positive, others as negatives."""
    docs = [p for p in paragraphs if len(p.split()) > 12]
    rows = []
    for i in range(n):
        negs = [docs[(n + i * negatives + j) % len(docs)] for j in range(negatives)]
        rows.append(
            {
                "query": " ".join(docs[i].split()[:8]),
                "pos": [docs[i]],
                "neg": negs,
                "pos_scores": [0.9],
                "neg_scores": [0.1 + 0.1 * j for j in range(negatives)],
            }
        )
    return rows


def one_step(ours: dict[str, torch.nn.Parameter], theirs: dict[str, torch.nn.Parameter], lr: float = 0.1) -> None:
    """One SGD step on each side (gradients already computed).

    SGD, not AdamW: Adam's first step is about ``lr * sign(grad)`` for every element, so an element
    whose gradient is zero in exact arithmetic (attention key biases: softmax ignores a shift of a
    whole row) moves by up to ``lr`` on rounding noise alone, in FlagEmbedding against itself too.
    SGD moves each weight by ``lr * grad``, so equal weights after the step mean equal gradients.
    """
    assert ours.keys() == theirs.keys()
    for params in (ours, theirs):
        torch.optim.SGD([p for p in params.values() if p.requires_grad], lr=lr).step()


def assert_same_parameters(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], atol: float) -> None:
    """Every tensor of ``theirs`` equals ``ours`` to ``atol`` (names already matched)."""
    assert ours.keys() == theirs.keys()
    worst = max((ours[k] - theirs[k]).abs().max().item() for k in ours)
    assert worst <= atol, worst
