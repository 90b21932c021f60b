"""Every Python block of the README and the docs runs, offline, on the fixture models.

Each page runs in a fresh process, its blocks top to bottom in one namespace, in an empty working
folder, with ``HF_HUB_OFFLINE=1``, the network refused but for loopback, and a Hugging Face cache
in which the hub ids the docs use name fixture models (``_hub_cache.HUB_FIXTURES``). A page that
asks for a server (``<!-- snippet-server: ARGS -->``) gets ``bge-rag serve ARGS`` started on a free
loopback port, at the address its blocks write ``http://localhost:8000``. A block marked
``<!-- snippet: skip REASON -->`` is reported as skipped with its reason.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from _hub_cache import HUB_FIXTURES
from _snippets import ROOT, SERVER_URL, MarkerError, Page, pages, parse

RUN_PAGE = Path(__file__).with_name("_run_page.py")
PAGES = [parse(path) for path in pages()]
RUNNABLE = [page for page in PAGES if any(block.skip is None for block in page.blocks)]
SKIPPED = [block for page in PAGES for block in page.blocks if block.skip is not None]
PAGE_TIMEOUT_S = 600
# A hub id in quotes; "<id>-query" is the server's query alias of that model, not another model.
_HUB_ID = re.compile(r"""["'](BAAI/[\w.-]+?)(?:-query)?["']""")
#: Ids the docs load to show the error a missing model gives.
MISSING_ON_PURPOSE = {"BAAI/no-such-model"}


def _env(hf_home: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HAYSTACK_TELEMETRY_ENABLED": "False",
        "ANONYMIZED_TELEMETRY": "False",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_TOKEN"):
        env.pop(name, None)
    return env


class _Output:
    """A process's output lines, read on a thread so that waiting for one has a deadline."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(proc.stdout or ()), daemon=True).start()

    def wait_for(self, pattern: str, proc: subprocess.Popen, timeout: float = 180) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"the docs server did not start ({pattern!r}):\n{''.join(self.lines)[-4000:]}")


@contextmanager
def _server(args: tuple[str, ...], env: dict[str, str], cwd: Path) -> Iterator[str]:
    """``bge-rag serve ARGS`` on a free loopback port; yields its base URL."""
    command = [sys.executable, "-m", "bge_rag", "serve", *args, "--host", "127.0.0.1", "--port", "0"]
    command += ["--log-level", "info"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
    try:
        output = _Output(proc)
        port = output.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", proc).group(1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_markers_parse_and_pages_are_found():
    paths = {page.path for page in PAGES}
    assert "README.md" in paths
    assert any(path.startswith("docs/") for path in paths), paths
    for page in PAGES:
        if page.server_args is not None:
            assert any(SERVER_URL in block.code for block in page.blocks), (
                f"{page.path} asks for a server but no block calls {SERVER_URL}"
            )


def test_snippets_load_only_hub_ids_the_fixture_cache_has():
    unknown = {
        f"{block.page}:{block.line}: {hub_id}"
        for page in PAGES
        for block in page.blocks
        if block.skip is None
        for hub_id in _HUB_ID.findall(block.code)
        if hub_id not in HUB_FIXTURES and hub_id not in MISSING_ON_PURPOSE
    }
    assert not unknown, (
        "these blocks load hub ids that tests/docs/_hub_cache.py has no fixture for "
        f"(use one of {sorted(HUB_FIXTURES)}, or mark the block skipped with the reason): {sorted(unknown)}"
    )


def test_a_misspelt_marker_is_an_error(tmp_path, monkeypatch):
    import _snippets

    monkeypatch.setattr(_snippets, "ROOT", tmp_path)
    page = tmp_path / "page.md"
    page.write_text("<!-- snippet: skipp typo -->\n```python\nprint(1)\n```\n")
    with pytest.raises(MarkerError, match="unknown marker"):
        parse(page)
    page.write_text("<!-- snippet: skip a reason -->\n\n```python\nprint(1)\n```\n")
    with pytest.raises(MarkerError, match="directly above"):
        parse(page)
    page.write_text("!!! note\n    <!-- snippet: skip GPU -->\n    ```python\n    x = 1\n    ```\n```py\ny = 2\n```\n")
    blocks = parse(page).blocks
    assert [(b.line, b.code, b.skip) for b in blocks] == [(4, "x = 1\n", "GPU"), (7, "y = 2\n", None)]


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=[page.path for page in RUNNABLE])
def test_page_snippets_run(page: Page, docs_hf_home: Path, tmp_path: Path):
    env = _env(docs_hf_home)
    blocks = [block for block in page.blocks if block.skip is None]
    with _server(page.server_args, env, tmp_path) if page.server_args is not None else _no_server() as url:
        payload = [
            {"page": block.page, "line": block.line, "code": block.code.replace(SERVER_URL, url or SERVER_URL)}
            for block in blocks
        ]
        (tmp_path / "blocks.json").write_text(json.dumps(payload), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, str(RUN_PAGE), str(tmp_path / "blocks.json")],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=PAGE_TIMEOUT_S,
        )
    assert result.returncode == 0, f"{page.path}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert result.stdout.rstrip().endswith("--- all blocks ran")


@contextmanager
def _no_server() -> Iterator[None]:
    yield None


@pytest.mark.parametrize("block", SKIPPED, ids=[f"{block.page}:{block.line}" for block in SKIPPED])
def test_skipped_snippet(block):
    pytest.skip(f"{block.page}:{block.line}: {block.skip}")
