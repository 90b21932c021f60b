"""LLM rerankers scored by the "Yes" logit (FlagLLMReranker: bge-reranker-v2-gemma).

A causal LM of a type transformers ships (Gemma, Gemma 2, Qwen2: the types parity-tested), on
transformers 4.45+ and 5. The score is the logit of the ``"Yes"`` token after FlagEmbedding's
prompt, at the pair's last token: ``lm_head``'s "Yes" row applied to the final (normed) hidden
state, plus Gemma 2's final logit soft-capping, without computing the other vocabulary logits.
"""

from __future__ import annotations

import numpy as np
import torch

from ..loading import Backbone
from .decoder import DecoderScorer


class YesLogitScorer(DecoderScorer):
    """FlagLLMReranker's scoring: the "Yes" logit after the prompt.

    Args:
        backbone: The loaded causal LM.
        max_length: Tokens of the passage at most.
        query_max_length: Tokens of the query at most.
        prompt: The instruction after the pair (default: FlagEmbedding's).
    """

    kind = "llm"
    options = frozenset({"prompt"})
    refusal = (
        "cutoff_layers, compress_ratio and compress_layers apply to the layer-wise and lightweight LLM rerankers only."
    )

    def __init__(
        self, backbone: Backbone, *, max_length: int, query_max_length: int, prompt: str | None = None
    ) -> None:
        super().__init__(backbone, max_length=max_length, query_max_length=query_max_length, prompt=prompt)
        self.yes_id = self.pairs.ids("Yes")[0]
        head = self.model.get_output_embeddings()
        self._yes_weight = head.weight[self.yes_id].detach()
        bias = getattr(head, "bias", None)
        self._yes_bias = None if bias is None else bias[self.yes_id].detach()
        self._softcap = getattr(self.model.config, "final_logit_softcapping", None)
        self._freeze()

    def _forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor, query_lengths: list[int], prompt_length: int
    ) -> np.ndarray:
        decoder = self.model.get_decoder()
        hidden = decoder(input_ids=input_ids, attention_mask=mask, use_cache=False, return_dict=True).last_hidden_state
        last = self._last(hidden, mask)
        logit = last @ self._yes_weight
        if self._yes_bias is not None:
            logit = logit + self._yes_bias
        if self._softcap:
            logit = torch.tanh(logit / self._softcap) * self._softcap
        return logit.float().cpu().numpy()[None, :]


__all__ = ["YesLogitScorer"]
