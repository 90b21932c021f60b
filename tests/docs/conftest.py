"""The docs tests' fixtures: the hub cache of fixture models under real hub ids, built once."""

from __future__ import annotations

from pathlib import Path

import pytest
from _hub_cache import build_hub_cache


@pytest.fixture(scope="session")
def docs_hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``HF_HOME`` for the snippets: the hub ids the docs use, answered by fixture models."""
    return build_hub_cache(tmp_path_factory.mktemp("docs-hub"))
