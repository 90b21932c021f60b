"""bge_core imports no RAG framework (and no parity oracle)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

FRAMEWORKS = (
    "langchain",
    "langchain_core",
    "llama_index",
    "haystack",
    "sentence_transformers",
    "FlagEmbedding",
    # The server, streaming and Ray extras load these only when used.
    "fastapi",
    "starlette",
    "uvicorn",
    "prometheus_client",
    "pyarrow",
    "ray",
)


@pytest.mark.slow
def test_import_bge_core_imports_no_framework():
    code = (
        "import sys, bge_core, bge_rag.cli, bge_rag.testing, bge_rag.sample_data\n"
        "import bge_rag.server, bge_rag.server.command, bge_rag.corpus, bge_rag.corpus.command\n"
        "bge_rag.cli.build_parser()\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r})\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


ROOT = Path(__file__).resolve().parent.parent
APP_AND_ADAPTER_DIRS = ("bge_rag", "integrations")


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(module, imported names, line)`` of every import statement in a file (relative ones resolved
    against its package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((module, [alias.name for alias in node.names], node.lineno))
    return found


def test_the_engine_imports_no_app_and_no_app_dependency():
    banned = ("bge_rag", "fastapi", "starlette", "uvicorn", "pyarrow", "ray", *FRAMEWORKS)
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted((ROOT / "bge_core").rglob("*.py"))
        for module, _, line in _imports(path)
        if module.split(".")[0] in banned
    ]
    assert offenders == []


def test_apps_and_adapters_use_only_public_engine_names():
    """No ``from bge_core.x import _y``, no ``bge_core._x`` module, no ``engine._attr`` through an import."""
    offenders = []
    for folder in APP_AND_ADAPTER_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for module, names, line in _imports(path):
                if module.split(".")[0] != "bge_core":
                    continue
                private = [n for n in names if n.startswith("_") and not n.endswith("__")]
                if private or any(part.startswith("_") for part in module.split(".")):
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: from {module} import {', '.join(names)}")
    assert offenders == []


def test_public_names():
    import bge_core

    for name in ("Embedder", "Reranker", "Encoded", "SparseVector", "Ranked", "BGEError"):
        assert name in bge_core.__all__ and hasattr(bge_core, name)


# ------------------------------------------------------------------------------------ the wheel
NAMESPACE_DIRS = (
    "llama_index",
    "llama_index/embeddings",
    "llama_index/postprocessor",
    "haystack_integrations",
    "haystack_integrations/components",
    "haystack_integrations/components/embedders",
    "haystack_integrations/components/rankers",
)
PACKAGES = (
    "bge_core",
    "bge_rag",
    "langchain_bge",
    "sentence_transformers_bge",
    "llama_index/embeddings/bge",
    "llama_index/postprocessor/bge_rerank",
    "haystack_integrations/components/embedders/bge",
    "haystack_integrations/components/rankers/bge",
)


def _tracked_copy(dest):
    """The files a clone would have (tracked, or new and not ignored), copied: the build never writes into
    the work tree."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, files.decode().split("\0")):
        if (root / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, dest / name)
    return dest


@pytest.mark.slow
def test_wheel_ships_every_package_and_namespace_imports_from_it(tmp_path):
    """Build the wheel as the README says, install it without dependencies, import every package from it."""
    import sysconfig
    import zipfile

    source = _tracked_copy(tmp_path / "clone")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("bge_rag-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names and f"{package}/py.typed" in names, package
    for namespace in NAMESPACE_DIRS:  # shared with other distributions: no __init__.py of ours there
        assert f"{namespace}/__init__.py" not in names, namespace
    for subpackage in (
        "bge_core/batching",
        "bge_core/rerank",
        "bge_rag/server",
        "bge_rag/server/routers",
        "bge_rag/corpus",
    ):
        assert f"{subpackage}/__init__.py" in names, subpackage
    assert "bge_rag/server/index.html" in names
    assert not any(name.startswith(("tests/", "examples/", "benchmarks/")) for name in names)

    target = tmp_path / "installed"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # -S: no site processing, so the editable install of this checkout is not on the path; the
    # frameworks come from this environment's site-packages, bge-rag only from the wheel.
    code = (
        "import sys\n"
        f"sys.path[:0] = [{str(target)!r}]; sys.path.append({sysconfig.get_paths()['purelib']!r})\n"
        "import importlib\n"
        f"for name in {[p.replace('/', '.') for p in PACKAGES]!r}:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert module.__file__.startswith({str(target)!r}), (name, module.__file__)\n"
        "from llama_index.core.embeddings import BaseEmbedding\n"
        "from llama_index.embeddings.bge import BGEEmbedding\n"
        "from haystack_integrations.components.rankers.bge import BGERanker\n"
        "assert issubclass(BGEEmbedding, BaseEmbedding)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
