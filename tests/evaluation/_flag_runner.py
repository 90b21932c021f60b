"""Run ``python -m FlagEmbedding.evaluation.custom ARGS`` in this interpreter, offline.

FlagEmbedding 1.4.2 imports ``transformers.modeling_attn_mask_utils``, which transformers 5
removed; as in tests/conftest.py, a stand-in module lets it import (nothing evaluated uses it).
"""

import runpy
import sys
import types

NAME = "transformers.modeling_attn_mask_utils"
try:
    __import__(NAME)
except ImportError:
    stand_in = types.ModuleType(NAME)
    for attr in (
        "AttentionMaskConverter",
        "_prepare_4d_attention_mask",
        "_prepare_4d_causal_attention_mask",
        "_prepare_4d_causal_attention_mask_for_sdpa",
    ):
        setattr(stand_in, attr, None)
    sys.modules[NAME] = stand_in

sys.argv = ["FlagEmbedding.evaluation.custom", *sys.argv[1:]]
runpy.run_module("FlagEmbedding.evaluation.custom", run_name="__main__")
