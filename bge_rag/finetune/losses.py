"""FlagEmbedding's embedder training objective as a sentence-transformers loss.

:class:`FlagEmbedderLoss` computes what ``FlagEmbedding.finetune.embedder.encoder_only.base``'s
``BiEncoderOnlyEmbedderModel`` computes (``AbsEmbedderModel.forward``): inner products of the
(normalized) query and passage vectors divided by the temperature, cross-entropy with the query's
own positive as the target over

- every passage of the batch (in-batch negatives: the group's ``train_group_size - 1`` hard
  negatives and all other queries' passages), and
- with ``negatives_cross_device``, every passage of every process;

plus, with teacher scores, FlagEmbedding's distillation (``kl_div``: cross-entropy against the
softmax of the teacher's scores over the group, added to the contrastive loss; ``m3_kd_loss``:
each passage of the group in turn as the target, the higher-ranked ones masked, weighted by the
teacher) and Matryoshka (``use_mrl``: the mean of the losses at each of ``mrl_dims``, each
prefix re-normalized).

The functions below the class are the shared core, also used by the BGE-M3 objective with its
other scores.

Across processes FlagEmbedding gathers queries and passages without gradient (its own rank's
slice keeps it) and every rank computes the loss of all queries; the data-parallel average of
those gradients is ``1 / world_size`` of the combined batch's. Here the passages are gathered
with gradient and each rank computes its own queries' loss: the same loss value averaged over
ranks, and exactly the gradient of one process on the combined batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KD_LOSS_TYPES = ("kl_div", "m3_kd_loss")
ScoreFn = Callable[[Tensor, Tensor], Tensor]


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather_with_grad(tensor: Tensor) -> Tensor:
    """``tensor`` of every process concatenated along dim 0 in rank order, differentiable (backward sums)."""
    _, size = world()
    if size == 1:
        return tensor
    import torch.distributed.nn  # noqa: PLC0415 - only for multi-process runs

    return torch.cat(torch.distributed.nn.all_gather(tensor.contiguous()), dim=0)


def local_scores(scores: Tensor, group_size: int, offset: int = 0) -> Tensor:
    """Each query's scores against its own group, ``(queries, group_size)``, from scores against all passages.

    ``offset``: the index of the first query's group among the passages (its rank's position when
    the passages were gathered from several processes).
    """
    rows = torch.arange(scores.size(0), device=scores.device)
    starts = (rows + offset) * group_size
    columns = starts.unsqueeze(1) + torch.arange(group_size, device=scores.device)
    return scores[rows.unsqueeze(1), columns]


def kl_distill(teacher_targets: Tensor, student_scores: Tensor) -> Tensor:
    """FlagEmbedding's ``kl_div`` distillation: cross-entropy against the teacher's distribution."""
    return -torch.mean(torch.sum(torch.log_softmax(student_scores, dim=-1) * teacher_targets, dim=-1))


def m3_kd_loss(teacher_targets: Tensor, student_scores: Tensor, group_size: int, offset: int = 0) -> Tensor:
    """FlagEmbedding's ``m3_kd_loss``: the group's passages in turn as target, earlier ones masked out."""
    labels = (torch.arange(student_scores.size(0), device=student_scores.device) + offset) * group_size
    loss = student_scores.new_zeros(())
    mask = torch.zeros_like(student_scores)
    for i in range(group_size):
        target = labels + i
        per_query = F.cross_entropy(student_scores + mask, target, reduction="none")
        loss = loss + torch.mean(teacher_targets[:, i] * per_query)
        mask = torch.scatter(mask, -1, target.unsqueeze(-1), torch.finfo(student_scores.dtype).min)
    return loss


def contrastive_loss(
    q_reps: Any,
    p_reps: Any,
    score_fn: ScoreFn,
    *,
    group_size: int,
    teacher_targets: Tensor | None = None,
    kd_loss_type: str = "kl_div",
    cross_device: bool = False,
) -> Tensor:
    """FlagEmbedding's loss for one kind of score, with in-batch negatives (``AbsEmbedderModel._compute_*_loss``).

    Args:
        q_reps: The batch's query representations (``score_fn``'s first argument), ``B`` queries.
        p_reps: Their passages, ``B * group_size``, each query's group contiguous, positive first.
        score_fn: ``(queries, passages) -> (queries, passages)`` scores, temperature applied.
        group_size: Passages per query.
        teacher_targets: ``(B, group_size)`` softmax of teacher scores, or ``None``.
        kd_loss_type: ``"kl_div"`` or ``"m3_kd_loss"``.
        cross_device: Every process's passages are negatives too (``p_reps`` must be a tensor).
    """
    offset = 0
    if cross_device:
        rank, _ = world()
        offset = rank * (len(p_reps) // group_size)  # this process's first query among all processes'
        p_reps = gather_with_grad(p_reps)
    scores = score_fn(q_reps, p_reps)  # (B, world * B * G)
    targets = (torch.arange(scores.size(0), device=scores.device) + offset) * group_size
    if teacher_targets is None:
        return F.cross_entropy(scores, targets)
    if kd_loss_type == "kl_div":
        return kl_distill(teacher_targets, local_scores(scores, group_size, offset)) + F.cross_entropy(scores, targets)
    return m3_kd_loss(teacher_targets, scores, group_size, offset)


def chunks(features: dict[str, Any], sub_batch_size: int | None) -> list[dict[str, Any]]:
    """``features`` cut into chunks of ``sub_batch_size`` texts (FlagEmbedding's ``sub_batch_size``; one without)."""
    size = features["input_ids"].size(0)
    step = sub_batch_size if sub_batch_size and sub_batch_size > 0 else size
    return [
        {k: v[start : start + step] if isinstance(v, Tensor) else v for k, v in features.items()}
        for start in range(0, size, step)
    ]


def teacher_distribution(teacher_scores: Tensor | None, batch_size: int) -> Tensor | None:
    """FlagEmbedding's teacher targets: the softmax of the group's teacher scores, ``(B, group_size)``."""
    if teacher_scores is None:
        return None
    return torch.softmax(teacher_scores.detach().float().view(batch_size, -1), dim=-1)


class FlagEmbedderLoss(nn.Module):
    """FlagEmbedding's embedder objective on a sentence-transformers model.

    The model's ``sentence_embedding`` is the pooled (and, with a Normalize module, normalized)
    vector; the loss gets two feature dicts, the queries' and the passages' (``B * group_size``,
    each query's group contiguous, positive first), and the teacher scores as labels
    (``(B, group_size)``) when distilling.

    Args:
        model: The SentenceTransformer being trained.
        group_size: ``train_group_size``.
        temperature: Scores are divided by it (FlagEmbedding's default 0.02).
        normalize_embeddings: Re-normalize Matryoshka prefixes (the full vector is normalized by the
            model's Normalize module).
        negatives_cross_device: Every process's passages are negatives.
        kd_loss_type: ``"kl_div"`` or ``"m3_kd_loss"``, used when labels are given.
        mrl_dims: Matryoshka dimensions (``use_mrl``); empty for none.
        sub_batch_size: Encode in chunks of this many texts (memory; FlagEmbedding's option).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        group_size: int,
        temperature: float = 0.02,
        normalize_embeddings: bool = True,
        negatives_cross_device: bool = False,
        kd_loss_type: str = "kl_div",
        mrl_dims: Sequence[int] = (),
        sub_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if kd_loss_type not in KD_LOSS_TYPES:
            raise ValueError(f"Invalid kd_loss_type {kd_loss_type!r}; valid: {', '.join(KD_LOSS_TYPES)}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.model = model
        self.group_size = group_size
        self.temperature = temperature
        self.normalize_embeddings = normalize_embeddings
        self.negatives_cross_device = negatives_cross_device
        self.kd_loss_type = kd_loss_type
        self.mrl_dims = list(mrl_dims)
        self.sub_batch_size = sub_batch_size

    def embed(self, features: dict[str, Tensor]) -> Tensor:
        """The model's sentence embeddings of one feature dict (in chunks with ``sub_batch_size``)."""
        parts = [self.model(chunk)["sentence_embedding"] for chunk in chunks(features, self.sub_batch_size)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)

    def score(self, q_reps: Tensor, p_reps: Tensor) -> Tensor:
        """Inner products over the temperature."""
        return q_reps @ p_reps.transpose(0, 1) / self.temperature

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        """The loss of a batch: ``[query features, passage features]`` and teacher scores (or ``None``)."""
        queries, passages = list(sentence_features)
        q_reps = self.embed(queries)
        p_reps = self.embed(passages)
        targets = teacher_distribution(labels, q_reps.size(0))
        if not self.mrl_dims:
            return self._loss(q_reps, p_reps, targets)
        total = q_reps.new_zeros(())
        for dim in self.mrl_dims:
            q, p = q_reps[:, :dim], p_reps[:, :dim]
            if self.normalize_embeddings:
                q, p = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
            total = total + self._loss(q, p, targets)
        return total / len(self.mrl_dims)

    def _loss(self, q_reps: Tensor, p_reps: Tensor, targets: Tensor | None) -> Tensor:
        return contrastive_loss(
            q_reps,
            p_reps,
            self.score,
            group_size=self.group_size,
            teacher_targets=targets,
            kd_loss_type=self.kd_loss_type,
            cross_device=self.negatives_cross_device,
        )

    @property
    def citation(self) -> str:
        """What sentence-transformers' model card cites for this loss."""
        return "FlagEmbedding (BAAI): C-Pack / BGE, https://arxiv.org/abs/2309.07597"


__all__ = [
    "KD_LOSS_TYPES",
    "FlagEmbedderLoss",
    "chunks",
    "contrastive_loss",
    "gather_with_grad",
    "kl_distill",
    "local_scores",
    "m3_kd_loss",
    "teacher_distribution",
    "world",
]
