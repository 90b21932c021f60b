"""Tiny random LLM rerankers built in code, for parity tests against FlagEmbedding's LLM rerankers.

- ``build_causal_reranker``: a transformers causal LM (Gemma, Gemma 2, Qwen2, Llama) as
  ``FlagLLMReranker`` runs it (bge-reranker-v2-gemma's architecture).
- ``build_layerwise_reranker`` (transformers 4 only): FlagEmbedding's ``LayerWiseMiniCPMForCausalLM``
  with its modelling files copied, at test time, from the installed FlagEmbedding package into the
  model folder and named in ``config.json``'s ``auto_map``, as the hub checkpoint ships them.
- ``build_lightweight_reranker`` (transformers 4 only): FlagEmbedding's ``CostWiseGemmaForCausalLM``,
  the same way.

All share one byte-level BPE tokenizer trained on real text (so every script tokenizes), with
``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3 as Gemma's tokenizer has them. Weights are
random but fixed by a seed; the global RNG is left untouched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch

from bge_rag.sample_data import python_docs_paragraphs

SEED = 1234
MULTILINGUAL = [
    "Grüße aus Köln — naïve café",
    "北京欢迎你，上海的天气很好。",
    "Привет, как дела? Это тест.",
    "مرحبا بالعالم",
    "こんにちは世界、テストです。",
    "emoji 🙂 and tabs\tand\nnewlines",
]
CausalArch = Literal["gemma", "gemma2", "qwen2", "llama"]


def build_tokenizer(dest: Path, padding_side: Literal["left", "right"] = "right", vocab_size: int = 700) -> Path:
    """Train a byte-level BPE tokenizer and save it (fast tokenizer files) into ``dest``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    dest.mkdir(parents=True, exist_ok=True)
    rust = Tokenizer(models.BPE(unk_token="<unk>"))
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    rust.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    rust.train_from_iterator([*python_docs_paragraphs()[:300], *MULTILINGUAL * 5, "Yes No Yes No"], trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=rust,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side=padding_side,
    )
    tokenizer.model_max_length = 8192
    tokenizer.save_pretrained(str(dest))
    return dest


def _vocab(dest: Path) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(str(dest)))


def _save(model: torch.nn.Module, dest: Path) -> None:
    model.save_pretrained(str(dest), safe_serialization=True)


def _init(model: torch.nn.Module, seed: int, std: float) -> None:
    """Re-draw every weight from N(0, std) (norms around 1), so scores spread over a few units."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=g))
            else:
                param.copy_(std * torch.randn(param.shape, generator=g))


def build_causal_reranker(
    dest: Path, arch: CausalArch = "gemma", *, padding_side: Literal["left", "right"] = "right", seed: int = SEED
) -> Path:
    """A 2-layer random causal LM of ``arch`` (hidden 64) with the test tokenizer."""
    import transformers

    build_tokenizer(dest, padding_side)
    common = dict(
        vocab_size=_vocab(dest),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    if arch == "gemma":
        config = transformers.GemmaConfig(head_dim=16, **common)
        cls = transformers.GemmaForCausalLM
    elif arch == "gemma2":
        config = transformers.Gemma2Config(head_dim=16, sliding_window=64, final_logit_softcapping=3.0, **common)
        cls = transformers.Gemma2ForCausalLM
    elif arch == "qwen2":
        config = transformers.Qwen2Config(tie_word_embeddings=False, **common)
        cls = transformers.Qwen2ForCausalLM
    else:
        config = transformers.LlamaConfig(tie_word_embeddings=False, **common)
        cls = transformers.LlamaForCausalLM
    config.architectures = [cls.__name__]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    _init(model, seed, 0.2)
    _save(model, dest)
    return dest


def _flag_models_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("FlagEmbedding")
    assert spec is not None and spec.origin is not None, "FlagEmbedding is not installed"
    return Path(spec.origin).parent / "inference" / "reranker" / "decoder_only" / "models"


def _copy_code(dest: Path, names: tuple[str, ...]) -> None:
    """Copy FlagEmbedding's modelling files into ``dest`` (as the hub checkpoints ship them)."""
    for name in names:
        text = (_flag_models_dir() / name).read_text(encoding="utf-8")
        # The hub file imports this from transformers; FlagEmbedding's copy from its own package.
        text = text.replace(
            "from FlagEmbedding.utils.transformers_compat import is_torch_fx_available",
            "from transformers.utils import is_torch_fx_available",
        )
        assert "FlagEmbedding" not in text.replace("FlagEmbedding's", ""), f"{name} still imports FlagEmbedding"
        (dest / name).write_text(text, encoding="utf-8")


def _write_auto_map(dest: Path, auto_map: dict[str, str]) -> None:
    path = dest / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["auto_map"] = auto_map
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def build_layerwise_reranker(dest: Path, *, seed: int = SEED, padding_side: Literal["left", "right"] = "left") -> Path:
    """A 4-layer random layer-wise MiniCPM reranker (heads for layers 2..4), transformers 4 only."""
    from FlagEmbedding.inference.reranker.decoder_only.models.configuration_minicpm_reranker import (
        LayerWiseMiniCPMConfig,
    )
    from FlagEmbedding.inference.reranker.decoder_only.models.modeling_minicpm_reranker import (
        LayerWiseMiniCPMForCausalLM,
    )

    build_tokenizer(dest, padding_side)
    config = LayerWiseMiniCPMConfig(
        vocab_size=_vocab(dest),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=False,
        scale_emb=12,
        dim_model_base=32,
        scale_depth=1.4,
        start_layer=2,
        head_multi=True,
        head_type="simple",
        # FlagEmbedding 1.4.2's MiniCPM cache path fails on transformers 4.5x (get_usable_length).
        use_cache=False,
    )
    config.architectures = ["LayerWiseMiniCPMForCausalLM"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LayerWiseMiniCPMForCausalLM(config)
    _init(model, seed, 0.1)
    _save(model, dest)
    _copy_code(dest, ("configuration_minicpm_reranker.py", "modeling_minicpm_reranker.py"))
    _write_auto_map(
        dest,
        {
            "AutoConfig": "configuration_minicpm_reranker.LayerWiseMiniCPMConfig",
            "AutoModel": "modeling_minicpm_reranker.LayerWiseMiniCPMModel",
            "AutoModelForCausalLM": "modeling_minicpm_reranker.LayerWiseMiniCPMForCausalLM",
        },
    )
    return dest


def build_lightweight_reranker(
    dest: Path, *, seed: int = SEED, padding_side: Literal["left", "right"] = "left"
) -> Path:
    """A 4-layer random lightweight (cost-wise) Gemma 2 reranker, transformers 4 only."""
    from FlagEmbedding.inference.reranker.decoder_only.models.gemma_config import CostWiseGemmaConfig
    from FlagEmbedding.inference.reranker.decoder_only.models.gemma_model import CostWiseGemmaForCausalLM

    build_tokenizer(dest, padding_side)
    config = CostWiseGemmaConfig(
        vocab_size=_vocab(dest),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        sliding_window=64,
        start_layer=2,
        layer_sep=1,
        layer_wise=True,
        tie_word_embeddings=False,
        use_cache=False,
    )
    config.architectures = ["CostWiseGemmaForCausalLM"]
    # transformers 4.46's GenerationConfig.validate logs a malformed warning for Gemma 2 configs
    # ("not all arguments converted"), which pytest's log capture turns into an error: keep it quiet.
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CostWiseGemmaForCausalLM(config)
    finally:
        hf_logging.set_verbosity(level)
    _init(model, seed, 0.1)
    _save(model, dest)
    _copy_code(dest, ("gemma_config.py", "gemma_model.py"))
    _write_auto_map(
        dest,
        {
            "AutoConfig": "gemma_config.CostWiseGemmaConfig",
            "AutoModel": "gemma_model.CostWiseGemmaModel",
            "AutoModelForCausalLM": "gemma_model.CostWiseGemmaForCausalLM",
        },
    )
    return dest


def edge_pairs(paragraphs: list[str]) -> list[tuple[str, str]]:
    """Pairs with the edge cases of the acceptance list, mixed with real text."""
    long_text = " ".join(paragraphs[60:80])  # far over 512 tokens
    return [
        *[(paragraphs[i], paragraphs[i + 1]) for i in range(0, 16, 2)],
        ("", paragraphs[3]),
        (paragraphs[4], ""),
        ("", ""),
        ("   ", " \t\n "),
        (long_text, paragraphs[7]),  # query past query_max_length
        ("what is a context manager?", long_text),  # passage past max_length
        (long_text, long_text),  # both
        (paragraphs[0], paragraphs[1]),  # duplicate of the first pair
        (MULTILINGUAL[1], MULTILINGUAL[0]),
        (MULTILINGUAL[2], MULTILINGUAL[4] + " " + MULTILINGUAL[3]),
        (MULTILINGUAL[5], "Yes"),
    ]
