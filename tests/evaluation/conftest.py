"""Fixtures of the evaluation tests: a small judged dataset of real English paragraphs."""

from __future__ import annotations

from pathlib import Path

import pytest
from _eval_support import build_dataset


@pytest.fixture(scope="session")
def eval_dir(tmp_path_factory: pytest.TempPathFactory, paragraphs: list[str]) -> Path:
    return build_dataset(tmp_path_factory.mktemp("eval") / "paragraphs", paragraphs)
