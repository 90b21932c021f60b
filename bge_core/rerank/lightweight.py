"""Lightweight LLM rerankers (LightWeightFlagLLMReranker: bge-reranker-v2.5-gemma2-lightweight).

A Gemma 2 run with the modelling code shipped in the model folder (``CostWiseGemma...``), which
compresses passage tokens (``compress_ratio`` at ``compress_layers``) and scores at
``cutoff_layers``. That code calls Gemma 2 layers with the transformers 4.46 signature, so this
kind runs on transformers 4.46 only (FlagEmbedding asks for ``transformers==4.46.0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..checks import transformers_version
from ..errors import ConfigError, UnsupportedModelError
from ..loading import Backbone
from .decoder import LIGHTWEIGHT_PROMPT, LayeredScorer, check_layers

#: The compression ratios the model's code supports.
COMPRESS_RATIOS = (1, 2, 4, 8)


class LightweightScorer(LayeredScorer):
    """LightWeightFlagLLMReranker's scoring: compressed passages, each cutoff layer's head.

    Rows are always padded on the right (LightWeightFlagLLMReranker sets the tokenizer so; its
    compression refuses left padding).

    Args:
        backbone, max_length, query_max_length, cutoff_layers: As for
            :class:`~bge_core.rerank.decoder.LayeredScorer`.
        prompt: The instruction after the pair (default: LightWeightFlagLLMReranker's).
        compress_ratio: Passage-token compression ratio: 1, 2, 4 or 8.
        compress_layers: The layers where the compression applies (default ``[8]``).
    """

    kind = "lightweight"
    options = frozenset({"prompt", "cutoff_layers", "compress_ratio", "compress_layers"})
    default_prompt = LIGHTWEIGHT_PROMPT
    pads_on_tokenizer_side = False

    @classmethod
    def check_runtime(cls, folder: Path, trust_remote_code: bool) -> None:
        """As for every remote-code kind, and transformers 4.46 (see the module's docstring)."""
        super().check_runtime(folder, trust_remote_code)
        if transformers_version() >= (4, 47):
            import transformers

            raise UnsupportedModelError(
                f"The lightweight LLM reranker's own modelling code (CostWiseGemma, as FlagEmbedding 1.4.2 ships it) "
                f"calls Gemma 2 layers with the transformers 4.46 signature and fails on later versions (FlagEmbedding "
                f"asks for transformers==4.46.0); this is transformers {transformers.__version__}. Run {str(folder)!r} "
                f"with 'transformers==4.46.*'."
            )

    def __init__(
        self,
        backbone: Backbone,
        *,
        max_length: int,
        query_max_length: int,
        prompt: str | None = None,
        cutoff_layers: int | Sequence[int] | None = None,
        compress_ratio: int = 1,
        compress_layers: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__(
            backbone,
            max_length=max_length,
            query_max_length=query_max_length,
            prompt=prompt,
            cutoff_layers=cutoff_layers,
        )
        layers = check_layers("compress_layers", compress_layers)
        if compress_ratio not in COMPRESS_RATIOS:
            raise ConfigError(f"compress_ratio must be 1, 2, 4 or 8, got {compress_ratio!r}")
        self.compress_ratio = compress_ratio
        self.compress_layers = [8] if layers is None else layers
        self._freeze()

    def _forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor, query_lengths: list[int], prompt_length: int
    ) -> np.ndarray:
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            output_hidden_states=True,
            use_cache=False,
            compress_layer=self.compress_layers,
            compress_ratio=self.compress_ratio,
            query_lengths=list(query_lengths),
            prompt_lengths=[prompt_length] * len(query_lengths),
            cutoff_layers=self.cutoff_layers,
        )
        return np.stack([self._last(lg, am).float().cpu().numpy() for lg, am in zip(out.logits, out.attention_masks)])


__all__ = ["COMPRESS_RATIOS", "LightweightScorer"]
