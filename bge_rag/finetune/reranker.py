"""FlagEmbedding's cross-encoder reranker fine-tuning on sentence-transformers' ``CrossEncoderTrainer``.

What ``FlagEmbedding.finetune.reranker.encoder_only.base`` trains, piece by piece:

- :class:`RerankerCollator`: the batch. Each row's group (1 positive + ``train_group_size - 1``
  negatives, :func:`bge_rag.finetune.data.sample_group`) becomes ``(query, passage)`` pairs
  tokenized as ``AbsRerankerTrainDataset.create_one_example`` does and padded as
  ``AbsRerankerCollator`` does: the same token ids.
- :class:`GroupCrossEntropyLoss`: ``AbsRerankerModel.forward``'s loss. The logits of a group
  compete in a softmax with the positive as the target, plus, with teacher scores, the
  cross-entropy against the softmax of the teacher's scores over the group.
- :func:`build_reranker`: the ``CrossEncoder`` to train: a reranker checkpoint as
  :func:`sentence_transformers_bge.export.build_cross_encoder` builds it (raw logits, as
  ``FlagReranker``), or a backbone with a new one-logit head (FlagEmbedding's ``num_labels=1``).

Wiring: the train dataset is ``datasets.Dataset.from_list(read_train_data(...))``, the collator
is passed as ``data_collator`` and the loss as ``loss``. ``CrossEncoderTrainer`` builds its own
data loader (its batch sampler reads ``data_collator.valid_label_columns``), never drops dataset
columns (``remove_unused_columns`` plays no part) and adds no ``dataset_name`` column to a single
``Dataset``. Its ``collect_features`` passes the loss the batch's values but ``"label"``, so the
collator returns one entry, ``"pair"`` (the pairs' model inputs), and ``"label"`` only when there
are teacher scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from sentence_transformers import CrossEncoder
from torch import Tensor, nn
from transformers import AutoConfig

from bge_core.loading import resolve_model_dir
from bge_rag.finetune.data import GroupCollator, TrainGroup
from bge_rag.finetune.losses import kl_distill, teacher_distribution
from sentence_transformers_bge.export import build_cross_encoder


def encode_pairs(
    tokenizer: Any, queries: Sequence[str], passages: Sequence[str], *, query_max_len: int, passage_max_len: int
) -> dict[str, list[list[int]]]:
    """FlagEmbedding's ``create_one_example`` on each ``(query, passage)``: unpadded model inputs.

    The query is cut to ``query_max_len + passage_max_len // 4`` tokens and the passage to
    ``passage_max_len + query_max_len // 2``; the pair (special tokens added) is then cut to
    ``query_max_len + passage_max_len`` from the passage's end. Under transformers 5, whose
    tokenizers have no ``prepare_for_model``, FlagEmbedding (``prepare_for_model_compat``) decodes
    the two cut id lists and tokenizes the pair of texts again; so does this function.
    """
    q_ids = tokenizer(
        list(queries), truncation=True, max_length=query_max_len + passage_max_len // 4, add_special_tokens=False
    )["input_ids"]
    p_ids = tokenizer(
        list(passages), truncation=True, max_length=passage_max_len + query_max_len // 2, add_special_tokens=False
    )["input_ids"]
    max_length = query_max_len + passage_max_len
    prepare = getattr(tokenizer, "prepare_for_model", None)
    if callable(prepare):  # transformers 4
        items = [
            prepare(q, p, truncation="only_second", max_length=max_length, padding=False) for q, p in zip(q_ids, p_ids)
        ]
        return {key: [item[key] for item in items] for key in items[0]}
    texts = {"skip_special_tokens": False, "clean_up_tokenization_spaces": False}
    pairs = tokenizer(
        tokenizer.batch_decode(q_ids, **texts),
        tokenizer.batch_decode(p_ids, **texts),
        truncation="only_second",
        max_length=max_length,
        padding=False,
    )
    return dict(pairs)


@dataclass
class RerankerCollator(GroupCollator):
    """``CrossEncoderTrainer``'s data collator: training rows to FlagEmbedding's reranker batch.

    The settings are :class:`~bge_rag.finetune.data.GroupCollator`'s (``query_instruction`` is
    FlagEmbedding's ``query_instruction_for_rerank``; a line's own instructions are its
    ``query_prompt`` / ``passage_prompt`` fields). It returns ``{"pair": <input_ids,
    attention_mask[, token_type_ids]: (B * G, L) tensors>}`` (each row's ``G = train_group_size``
    pairs contiguous, positive first), plus ``"label"``: the teacher scores, a ``(B, G)`` float
    tensor, when the rows carry them (knowledge distillation).
    """

    query_prompt_field: ClassVar[str] = "query_prompt"
    passage_prompt_field: ClassVar[str | None] = "passage_prompt"

    def collate(self, groups: Sequence[TrainGroup]) -> dict[str, Any]:
        """The batch of sampled groups (``AbsRerankerCollator``'s padding)."""
        encoded = encode_pairs(
            self.tokenizer,
            [group.query for group in groups for _ in group.passages],
            [passage for group in groups for passage in group.passages],
            query_max_len=self.query_max_len,
            passage_max_len=self.passage_max_len,
        )
        # FlagEmbedding passes max_length too, which padding to the longest ignores (with a warning).
        pair = self.tokenizer.pad(
            encoded, padding=True, pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt"
        )
        batch: dict[str, Any] = {"pair": dict(pair)}
        if groups[0].teacher_scores is not None:
            batch["label"] = torch.tensor([group.teacher_scores for group in groups], dtype=torch.float32)
        return batch


class GroupCrossEntropyLoss(nn.Module):
    """FlagEmbedding's reranker objective (``AbsRerankerModel.forward``) as a ``CrossEncoder`` loss.

    The model's logits of the batch's pairs (what the saved ``CrossEncoder`` scores at inference,
    before its activation) are grouped ``(B, group_size)``; the loss is the cross-entropy with each
    group's first pair, the positive, as the target, plus, when labels (teacher scores,
    ``(B, group_size)``) are given, the cross-entropy against their softmax over the group.

    Args:
        model: The ``CrossEncoder`` being trained (one output logit).
        group_size: ``train_group_size``.
    """

    def __init__(self, model: CrossEncoder, group_size: int) -> None:
        super().__init__()
        if group_size < 1:
            raise ValueError(f"group_size must be at least 1, got {group_size}")
        self.model = model
        self.group_size = group_size

    def forward(
        self,
        inputs: Sequence[dict[str, Tensor]],
        labels: Tensor | None = None,
        prompt: str | None = None,
        task: str | None = None,
    ) -> Tensor:
        """The loss of one batch: ``inputs`` holds one feature dict, the collator's ``"pair"``."""
        (features,) = inputs
        scores = self.model(features)["scores"].view(-1, self.group_size)
        target = torch.zeros(scores.size(0), dtype=torch.long, device=scores.device)
        loss = F.cross_entropy(scores, target)
        teacher = teacher_distribution(labels, scores.size(0))
        if teacher is not None:
            loss = loss + kl_distill(teacher.to(scores.device), scores)
        return loss

    @property
    def citation(self) -> str:
        """The work this objective comes from."""
        return "FlagEmbedding (BAAI): C-Pack / BGE, https://arxiv.org/abs/2309.07597"


def _is_reranker(folder: Path, trust_remote_code: bool) -> bool:
    """Whether ``folder`` holds a sequence-classification checkpoint (a reranker, head included)."""
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    return any(name.endswith("ForSequenceClassification") for name in config.architectures or ())


def build_reranker(
    model: str | Path,
    *,
    max_length: int | None = None,
    device: str | None = None,
    trust_remote_code: bool | None = None,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
) -> CrossEncoder:
    """The ``CrossEncoder`` to fine-tune from ``model``, scoring with raw logits as ``FlagReranker``.

    A reranker checkpoint is built by
    :func:`sentence_transformers_bge.export.build_cross_encoder` (its one-logit head kept); any
    other checkpoint gets a new one-logit head, as FlagEmbedding's runner loads it
    (``AutoModelForSequenceClassification`` with ``num_labels=1``).

    Args:
        model: Hub id or local folder.
        max_length: Tokens per pair when the trained model scores (inference), as for
            :class:`bge_core.Reranker`; ``None`` takes the registry's value.
        device: Device of the returned model.
        trust_remote_code: Allow a model's own code; ``None`` takes the registry's value.
        cache_dir: Hugging Face cache folder for Hub ids.
        revision: Model revision on the Hub.
        token: Hugging Face token for private models.

    Raises:
        ModelNotFoundError: ``model`` is neither a folder nor obtainable from the Hub.
        ModelLoadError: a reranker checkpoint with more than one output label.
    """
    hub: dict[str, Any] = {"cache_dir": cache_dir, "revision": revision, "token": token}
    folder = resolve_model_dir(model, trust_remote_code=bool(trust_remote_code), **hub)
    if _is_reranker(folder, bool(trust_remote_code)):
        return build_cross_encoder(
            model, max_length=max_length, device=device, trust_remote_code=trust_remote_code, **hub
        )
    return CrossEncoder(
        str(folder),
        num_labels=1,
        max_length=max_length,
        activation_fn=nn.Identity(),
        device=device,
        trust_remote_code=bool(trust_remote_code),
    )


__all__ = ["GroupCrossEntropyLoss", "RerankerCollator", "build_reranker", "encode_pairs"]
