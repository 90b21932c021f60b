"""Cross-encoders (FlagReranker: bge-reranker-base/large/v2-m3), with FlagReranker's exact pair formatting.

FlagReranker tokenizes the query without special tokens, capped at ``query_max_length``
(3/4 of ``max_length`` unless given), the passage without special tokens capped at
``max_length``, then joins the two token-id lists with the tokenizer's pair template
(``[CLS] q [SEP] p [SEP]`` for BERT, ``<s> q </s></s> p </s>`` for XLM-R), removing tokens from
the end of the passage only until the pair fits ``max_length``. Transformers 5 removed the
``prepare_for_model`` call that did the joining; here it is done on token ids with the fast
tokenizer's own post-processor, so no text is decoded and tokenized again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import batching
from ..errors import ModelLoadError
from ..loading import Backbone, load_backbone
from .base import PairScorer, PreparedPairs


class PairEncoder:
    """Turns (query, passage) pairs into model input ids exactly as FlagReranker does.

    Uses a private copy of the fast tokenizer with padding and truncation turned off, so the
    shared Hugging Face tokenizer's settings are never touched.
    """

    def __init__(self, tokenizer: Any, max_length: int, query_max_length: int) -> None:
        backend = getattr(tokenizer, "_tokenizer", None)
        if backend is None:
            raise ModelLoadError("Reranking needs a fast (Rust) tokenizer, i.e. a tokenizer.json in the model folder.")
        from tokenizers import Tokenizer

        self._rust = Tokenizer.from_str(backend.to_str())
        self._rust.no_padding()
        self._rust.no_truncation()
        self.max_length = max_length
        self.query_max_length = query_max_length
        self.n_special = self._rust.num_special_tokens_to_add(True)
        #: How many pairs of the last ``encode`` call were cut (query cap, passage cap or pair fit).
        self.last_truncated = 0
        self.with_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())

    def encode(self, pairs: Sequence[tuple[str, str]]) -> tuple[list[list[int]], list[list[int]] | None]:
        """Input ids of each pair, and its token type ids when the model takes them.

        Args:
            pairs: ``(query, passage)`` pairs.

        Returns:
            The input ids of each pair, and their token type ids (``None`` for a model without
            ``token_type_ids``); :attr:`last_truncated` counts the pairs that were cut.
        """
        queries = self._rust.encode_batch([q for q, _ in pairs], add_special_tokens=False)
        passages = self._rust.encode_batch([p for _, p in pairs], add_special_tokens=False)
        ids: list[list[int]] = []
        types: list[list[int]] = []
        self.last_truncated = 0
        for query, passage in zip(queries, passages):
            cut = len(query) > self.query_max_length or len(passage) > self.max_length
            if len(query) > self.query_max_length:
                query.truncate(self.query_max_length)
            if len(passage) > self.max_length:
                passage.truncate(self.max_length)
            excess = len(query) + len(passage) + self.n_special - self.max_length
            # As the old prepare_for_model(truncation="only_second"): cut the passage's end; if
            # the passage is too short to absorb the excess, leave the pair as it is.
            if 0 < excess < len(passage):
                passage.truncate(len(passage) - excess)
                cut = True
            self.last_truncated += cut
            pair = self._rust.post_process(query, passage, add_special_tokens=True)
            ids.append(pair.ids)
            types.append(pair.type_ids)
        return ids, (types if self.with_types else None)


class CrossEncoderScorer(PairScorer):
    """A sequence-classification model with one output: the score is its raw logit.

    Args:
        backbone: The loaded model (see :meth:`load`).
        max_length: Tokens per (query, passage) pair.
        query_max_length: Tokens of the query at most.
    """

    kind = "cross-encoder"
    refusal = (
        "prompt, cutoff_layers, compress_ratio and compress_layers apply to LLM rerankers only; "
        "{model!r} is a cross-encoder."
    )

    @classmethod
    def load(
        cls, folder: Path, *, model_name: str, device: torch.device, dtype: torch.dtype, trust_remote_code: bool
    ) -> Backbone:
        """Load (or reuse) the sequence-classification model of ``folder``.

        Raises:
            ModelLoadError: the model has no classifier head, or more than one output label.
        """
        backbone = load_backbone(
            folder, task="reranking", device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        labels = getattr(backbone.config, "num_labels", 1)
        if labels != 1:
            raise ModelLoadError(f"{model_name!r} has {labels} output labels; a reranker must have exactly one score.")
        return backbone

    def __init__(self, backbone: Backbone, *, max_length: int, query_max_length: int) -> None:
        self.model = backbone.model
        #: FlagReranker's pair formatting (a mutable helper: it counts the last call's truncations).
        self.pairs = PairEncoder(backbone.tokenizer, max_length, query_max_length)
        self._freeze()

    def prepare(self, pairs: Sequence[tuple[str, str]]) -> PreparedPairs:
        """Pair ids (and token types) as FlagReranker builds them."""
        input_ids, token_type_ids = self.pairs.encode(pairs)
        return PreparedPairs(input_ids, self.pairs.last_truncated, self._forward, token_type_ids)

    def _forward(self, batch: batching.Batch) -> np.ndarray:
        logits = self.model(**batch.model_inputs(), return_dict=True).logits
        return logits.view(-1).float().cpu().numpy()[None, :]


__all__ = ["CrossEncoderScorer", "PairEncoder"]
