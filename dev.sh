#!/usr/bin/env bash
# One-command setup for a fresh clone. Each command makes its own virtualenv and installs what it needs.
#   ./dev.sh demo [bge-rag demo options]   -> .venv-demo, runs `bge-rag demo`
#   ./dev.sh test [pytest options]         -> .venv-test, runs the whole test suite
#   ./dev.sh bench [bench.py options]      -> .venv-bench (+ fastembed, onnx), runs benchmarks/bench.py
# torch is pinned here (CPU build 2.13.0) only to keep installs quick; set BGE_RAG_TORCH to choose
# another (e.g. BGE_RAG_TORCH="torch" for your platform's default build). The package itself
# accepts any torch >= 2.1.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TORCH=${BGE_RAG_TORCH:-torch==2.13.0}

setup() {  # setup VENV EXTRA
  local venv=$1 extra=$2
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$TORCH"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$extra]"
}

case "${1:-}" in
  demo)
    shift
    setup .venv-demo demo
    exec .venv-demo/bin/bge-rag demo "$@"
    ;;
  test)
    shift
    setup .venv-test test
    exec .venv-test/bin/python -m pytest "$@"
    ;;
  bench)
    shift
    setup .venv-bench test
    .venv-bench/bin/python -m pip install --quiet --disable-pip-version-check fastembed onnx onnxruntime
    exec .venv-bench/bin/python benchmarks/bench.py "$@"
    ;;
  *)
    echo "usage: ./dev.sh demo|test|bench [args...]" >&2
    exit 64
    ;;
esac
