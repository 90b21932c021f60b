"""``python benchmarks/flag_runner.py MODULE ARGS``: run ``python -m MODULE ARGS`` for a FlagEmbedding module.

FlagEmbedding 1.4.2 imports ``transformers.modeling_attn_mask_utils`` (for an LLM reranker the
benchmarks never load); transformers 5 removed it. This launcher installs the same stand-in as
tests/conftest.py's ``import_flag_embedding`` when the import fails, then runs the module as
``__main__``. The speed benchmarks (eval_speed.py, finetune_speed.py) start FlagEmbedding's runners
through it; under transformers 4 it changes nothing.
"""

import runpy
import sys
import types

NAME = "transformers.modeling_attn_mask_utils"
STANDS_IN_FOR = (
    "AttentionMaskConverter",
    "_prepare_4d_attention_mask",
    "_prepare_4d_causal_attention_mask",
    "_prepare_4d_causal_attention_mask_for_sdpa",
)


def _unavailable(*args: object, **kwargs: object) -> None:
    raise NotImplementedError(NAME + " is not available in this transformers version")


def main() -> None:
    """Install the stand-in if needed, then run ``sys.argv[1]`` with the rest as its arguments."""
    try:
        __import__(NAME)
    except ImportError:
        stand_in = types.ModuleType(NAME)
        for attr in STANDS_IN_FOR:
            setattr(stand_in, attr, _unavailable)
        sys.modules[NAME] = stand_in
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
