"""Fixtures shared by the LangChain adapter tests."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def registry_folders(models, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Fixture folders under registry names, so bge_core applies the registry's settings.

    ``bge-small-en-v1.5`` and ``bge-small-zh-v1.5`` hold the dense fixture's files, ``bge-m3``
    the M3 fixture's (as symlinks, so nothing is copied). Each is a real folder: bge_core's
    ``shared_embedder`` keys on the resolved path, so two symlinked folder names would share
    one engine and one registry entry.
    """
    root = tmp_path_factory.mktemp("registry-named")
    links = {
        "en": ("bge-small-en-v1.5", models.dense),
        "zh": ("bge-small-zh-v1.5", models.dense),
        "m3": ("bge-m3", models.m3),
    }
    out = {}
    for key, (name, target) in links.items():
        folder = root / name
        folder.mkdir()
        for file in Path(target).iterdir():
            (folder / file.name).symlink_to(file)
        out[key] = str(folder)
    return SimpleNamespace(**out)
