"""Run ``python -m FlagEmbedding.evaluation.custom ARGS`` in this interpreter, offline.

Under transformers 5, FlagEmbedding 1.4.2 needs the stand-in module that tests/conftest.py's
``import_flag_embedding`` installs before it imports (nothing evaluated uses it).
"""

import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import import_flag_embedding  # noqa: E402

import_flag_embedding()
sys.argv = ["FlagEmbedding.evaluation.custom", *sys.argv[1:]]
runpy.run_module("FlagEmbedding.evaluation.custom", run_name="__main__")
