"""The ``>>>`` examples in the docstrings (the API reference shows them) run, as the docs' blocks do.

Each module's examples run in one fresh process through the docs runner: offline, on the fixture
models under real hub ids, in an empty working folder where ``tmp_path`` names a fresh folder. An
example line marked ``# doctest: +SKIP`` (the API reference hides the flag) is one that cannot run
here: it needs a network service, a cloud bucket, an event loop or objects the example only names.
Outputs written under the examples are what a reader sees; they are not compared, because the
fixture models are not the real ones.
"""

from __future__ import annotations

import doctest
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from _snippets import ROOT
from test_snippets import RUN_PAGE, _env

PACKAGES = (
    "bge_core",
    "bge_rag",
    "langchain_bge",
    "llama_index.embeddings.bge",
    "llama_index.postprocessor.bge_rerank",
    "haystack_integrations.components.embedders.bge",
    "haystack_integrations.components.rankers.bge",
    "sentence_transformers_bge",
)
#: Run before a module's examples: its globals, as doctest gives them, and a fresh ``tmp_path``.
_SETUP = (
    "import importlib, pathlib, tempfile\n"
    "globals().update(vars(importlib.import_module({module!r})))\n"
    "tmp_path = pathlib.Path(tempfile.mkdtemp())\n"
)


def _modules() -> list[str]:
    names: list[str] = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        if hasattr(module, "__path__"):
            names += [info.name for info in pkgutil.walk_packages(module.__path__, f"{package}.")]
    return sorted(set(names) - {"bge_rag.__main__", "bge_rag.server.__main__"})


def _examples(module_name: str) -> list[dict[str, object]]:
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    blocks = []
    for test in sorted(finder.find(module, module_name), key=lambda t: t.lineno or 0):
        if test.filename is None or Path(test.filename).resolve() != Path(module.__file__).resolve():
            continue  # found through an import, documented in its own module
        page = Path(test.filename).resolve().relative_to(ROOT).as_posix()
        lines = Path(test.filename).read_text(encoding="utf-8").splitlines()
        cursor = test.lineno or 0  # 0-based line of the documented object; its docstring is below
        code = ""
        for example in test.examples:
            head = example.source.splitlines()[0].strip()[:24]  # escapes in a docstring differ from its source
            found = [i for i, line in enumerate(lines) if line.lstrip().startswith(">>>") and head in line]
            # The first match below the object's line; doctest's line of a decorated function may be off.
            cursor = min((i for i in found if i >= cursor), default=found[0])
            if example.options.get(doctest.SKIP):
                continue
            # Padded so that a traceback names the example's own line of the source file.
            code += "\n" * max(0, cursor - code.count("\n")) + example.source
        if code.strip():
            blocks.append({"page": page, "line": 1, "code": code, "name": test.name})
    return blocks


EXAMPLES = {name: blocks for name in _modules() if (blocks := _examples(name))}


def test_the_public_modules_have_examples():
    assert {"bge_core", "bge_core.embedder", "langchain_bge"} <= set(EXAMPLES), sorted(EXAMPLES)


@pytest.mark.slow
def test_docstring_examples_run(docs_hf_home: Path, tmp_path: Path):
    # One process for all modules (each in its own namespace): a process per module would spend
    # most of its time importing torch again.
    blocks = []
    for module_name, examples in sorted(EXAMPLES.items()):
        setup = {"page": f"<setup of {module_name}>", "line": 1, "code": _SETUP.format(module=module_name)}
        blocks += [{**setup, "fresh": True}, *examples]
    (tmp_path / "blocks.json").write_text(json.dumps(blocks), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(RUN_PAGE), str(tmp_path / "blocks.json")],
        capture_output=True,
        text=True,
        env=_env(docs_hf_home),
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.stderr[-6000:]}"
    assert result.stdout.rstrip().endswith("--- all blocks ran")
