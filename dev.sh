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

chromium() {  # the server's web-page test drives a system Chromium; install Debian's when we may
  if command -v chromium >/dev/null 2>&1 || [ -n "${BGE_RAG_CHROMIUM:-}" ]; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "dev.sh: installing Debian's chromium (apt-get) for the web page test" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
      >/dev/null 2>&1 || echo "dev.sh: could not install chromium; the browser test will be skipped" >&2
  else
    echo "dev.sh: no chromium (apt-get install chromium, or set BGE_RAG_CHROMIUM); the browser test will be skipped" >&2
  fi
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
    chromium
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
