"""Layer-wise LLM rerankers (LayerWiseFlagLLMReranker: bge-reranker-v2-minicpm-layerwise).

MiniCPM with one score head per layer from ``start_layer``, run with the modelling code shipped
in the model folder (``LayerWiseMiniCPM...``, transformers 4 only); ``cutoff_layers`` picks the
layers whose scores are returned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..loading import Backbone
from .decoder import LayeredScorer


class LayerwiseScorer(LayeredScorer):
    """LayerWiseFlagLLMReranker's scoring: each cutoff layer's head at the pair's last token.

    Args:
        backbone, max_length, query_max_length, prompt, cutoff_layers: As for
            :class:`~bge_core.rerank.decoder.LayeredScorer`.
    """

    kind = "layerwise"
    options = frozenset({"prompt", "cutoff_layers"})
    refusal = "compress_ratio and compress_layers apply to the lightweight LLM reranker only."

    def __init__(
        self,
        backbone: Backbone,
        *,
        max_length: int,
        query_max_length: int,
        prompt: str | None = None,
        cutoff_layers: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__(
            backbone,
            max_length=max_length,
            query_max_length=query_max_length,
            prompt=prompt,
            cutoff_layers=cutoff_layers,
        )
        self._freeze()

    def _forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor, query_lengths: list[int], prompt_length: int
    ) -> np.ndarray:
        # use_cache=False: the shipped MiniCPM code's cache path calls DynamicCache.get_usable_length,
        # which transformers 4.5x removed; without a cache the scores are the same.
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            output_hidden_states=True,
            use_cache=False,
            cutoff_layers=self.cutoff_layers,
        )
        return np.stack([self._last(lg, mask).float().cpu().numpy() for lg in out.logits])


__all__ = ["LayerwiseScorer"]
