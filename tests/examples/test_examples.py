"""The examples run offline: on fixtures they print what they promise; without one they print a hint.

Every ``examples/*.py`` is run the way a user without network runs it: no fixture flag, sockets
refused (loopback too, so no stray local server answers), ``HF_HUB_OFFLINE=1`` and an empty
Hugging Face cache. Each must then either run on its offline fallback and say so, or stop with a
hint saying what to do, never with a traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
#: Exit statuses of a clean ending: 0 ran (on a fallback, said so), 1 or 2 stopped with a hint (a crash
#: is also 1, which the no-traceback check tells apart).
CLEAN_EXITS = (0, 1, 2)
HINT = re.compile(r"offline|unreachable|--offline-fixture", re.IGNORECASE)

# Runs the example as __main__ after refusing every network connection (AF_UNIX stays open).
_NO_NETWORK = textwrap.dedent(
    """
    import runpy, socket, sys

    def _refuse(self, address, *args, **kwargs):
        if isinstance(address, tuple):
            raise OSError(f"network access is disabled in this test (tried {address!r})")
        return _connect(self, address, *args, **kwargs)

    _connect = socket.socket.connect
    socket.socket.connect = _refuse
    socket.socket.connect_ex = lambda self, address: 111 if isinstance(address, tuple) else _connect(self, address)
    socket.create_connection = lambda address, *a, **k: (_ for _ in ()).throw(
        OSError(f"network access is disabled in this test (tried {address!r})"))
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
    """
)


def _run_offline(script: Path, *args: str, home: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(home),
        "HAYSTACK_TELEMETRY_ENABLED": "False",
        "ANONYMIZED_TELEMETRY": "False",
    }
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run(
        [sys.executable, "-c", _NO_NETWORK, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=600,
    )


def _small(script: Path) -> list[str]:
    """``--docs`` with a small value where the example takes it, to keep the run short."""
    return ["--docs", "20"] if "--docs" in script.read_text(encoding="utf-8") else []


def test_every_example_is_found():
    assert {path.name for path in EXAMPLES} >= {
        "m3_hybrid.py",
        "langchain_rag.py",
        "llamaindex_rag.py",
        "haystack_rag.py",
        "server_client.py",
    }


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_offline_without_fixture_prints_a_hint_not_a_traceback(script, tmp_path):
    result = _run_offline(script, *_small(script), home=tmp_path)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    assert result.returncode in CLEAN_EXITS, (result.returncode, output[-3000:])
    assert HINT.search(output), output[-3000:]
    if script.name == "m3_hybrid.py":  # this one cannot fall back: it says what to do instead
        assert result.returncode == 2 and result.stdout == ""
        assert "BAAI/bge-m3" in result.stderr and "--offline-fixture" in result.stderr and "--model" in result.stderr


@pytest.mark.slow
def test_m3_hybrid_example_runs_offline():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "m3_hybrid.py"), "--offline-fixture", "--docs", "80"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("query:") and "top sparse tokens" in lines[1]
    assert [line[:2] for line in lines[2:5]] == ["1.", "2.", "3."]
    assert all("hybrid" in line and "colbert" in line for line in lines[2:5])
