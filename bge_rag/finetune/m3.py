"""BGE-M3's unified fine-tuning (dense, sparse and ColBERT together) as a sentence-transformers loss.

:class:`M3UnifiedLoss` computes what FlagEmbedding's ``EncoderOnlyEmbedderM3Model.forward``
(``FlagEmbedding.finetune.embedder.encoder_only.m3``) computes, on a sentence-transformers model
of Transformer -> Pooling(cls) -> Normalize with the two output heads (:class:`M3Heads`) held by
the loss:

- dense: the (normalized) CLS vectors, inner products over the temperature;
- sparse (``unified_finetuning``): each text's lexical weights ``relu(sparse_linear(h))`` per
  token, the largest per token id, the tokenizer's cls/eos/pad/unk ids zeroed; inner products of
  those vocabulary-sized vectors over the temperature;
- ColBERT (``unified_finetuning``): ``colbert_linear(h[:, 1:])`` with padding zeroed (then
  normalized), each query token's best passage token summed, divided by the query's token count
  (CLS excluded) and by the temperature;
- the ensemble ``dense + 0.3 * sparse + colbert``.

Each score gets FlagEmbedding's contrastive loss (:func:`~bge_rag.finetune.losses.contrastive_loss`,
with its teacher distillation when teacher scores are given), and the total is
``(dense + ensemble + 0.1 * sparse + colbert) / 4``; with ``use_self_distill`` past
``self_distill_start_step``, the softmax of the (detached) ensemble scores is a teacher for the three
scores: ``(total + (kl(dense) + 0.1 * kl(sparse) + kl(colbert)) / 3) / 2``. Without
``unified_finetuning`` the loss is the dense loss alone.

Across processes (``negatives_cross_device``) only the dense loss sees other processes' passages,
as in FlagEmbedding (it disables them for the sparse, ColBERT and ensemble losses, and the ensemble
takes this process's block of the dense scores). The dense passages are gathered with gradient and
each process computes its own queries' loss, as :mod:`bge_rag.finetune.losses` explains.

What the trainer must do besides, done by :class:`M3HeadsCallback`
(``SentenceTransformerTrainer(..., loss=loss, callbacks=[M3HeadsCallback(loss)])``):

- the step count: FlagEmbedding's self-distillation starts when its model's own counter of
  training forward passes (micro-batches, so gradient accumulation counts each one) passes
  ``self_distill_start_step``. :attr:`M3UnifiedLoss.step` is that counter: the loss adds one after
  every forward pass in training mode; the callback sets it at the start of training to
  ``global_step * gradient_accumulation_steps`` (0 for a new run, the position reached when
  resuming from a checkpoint, where FlagEmbedding starts again from 0);
- the heads' gradients: the heads belong to the loss, not to the model the trainer wraps in
  ``DistributedDataParallel``, so their gradients are averaged across processes
  (:func:`sync_head_gradients`) before each optimizer step. sentence-transformers' trainer puts
  the loss module's parameters (so the heads) in the optimizer;
- checkpoints: the trainer saves the model; the callback adds the heads to each checkpoint folder.

Saving: the backbone is the sentence-transformers model's folder; :meth:`M3Heads.save` adds
``colbert_linear.pt`` and ``sparse_linear.pt`` (plain ``Linear`` state dicts, FlagEmbedding's files,
read by ``BGEM3FlagModel`` and :class:`bge_core.Embedder`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from bge_core.errors import ConfigError
from bge_core.heads import HEAD_FILES, load_linear, unused_token_ids

from .losses import KD_LOSS_TYPES, chunks, contrastive_loss, kl_distill, teacher_distribution, world

# FlagEmbedding's weights (EncoderOnlyEmbedderM3Model.forward and ensemble_score).
ENSEMBLE_SPARSE_WEIGHT = 0.3
SPARSE_LOSS_WEIGHT = 0.1


class M3Heads(nn.Module):
    """BGE-M3's ColBERT and sparse heads, as FlagEmbedding's M3 runner builds them.

    ``colbert_linear`` is ``Linear(hidden_size, hidden_size)`` (``Linear(hidden_size, colbert_dim)``
    with ``colbert_dim > 0``), ``sparse_linear`` is ``Linear(hidden_size, 1)``; new heads have
    PyTorch's default initialization (FlagEmbedding's too). :meth:`from_pretrained` loads a model
    folder's head files.

    Args:
        hidden_size: The backbone's hidden size.
        colbert_dim: ColBERT vector size; ``-1`` (or any value up to 0): ``hidden_size``.
    """

    def __init__(self, hidden_size: int, colbert_dim: int = -1) -> None:
        super().__init__()
        self.colbert_linear = nn.Linear(hidden_size, hidden_size if colbert_dim <= 0 else colbert_dim)
        self.sparse_linear = nn.Linear(hidden_size, 1)

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, hidden_size: int | None = None, colbert_dim: int = -1) -> M3Heads:
        """The heads of a model folder: its ``colbert_linear.pt`` and ``sparse_linear.pt`` when it has both, else new.

        Args:
            folder: The model folder (a BGE-M3 checkpoint, or any backbone to add the heads to).
            hidden_size: The backbone's hidden size; ``None`` reads the folder's ``config.json``.
            colbert_dim: ColBERT vector size of new heads (``-1``: the hidden size); a loaded
                ColBERT head must have this size (FlagEmbedding's ``load_state_dict`` fails otherwise).

        Raises:
            ConfigError: only one of the two head files exists (FlagEmbedding then silently starts
                both heads afresh, losing the one trained), the ColBERT head's size is not
                ``colbert_dim``, or the hidden size cannot be read.
            ModelLoadError: a head file is unreadable or not a ``Linear(hidden_size, n)`` state dict.
        """
        folder = Path(folder)
        if hidden_size is None:
            hidden_size = _config_hidden_size(folder)
        heads = cls(hidden_size, colbert_dim)
        present = {name: (folder / file).is_file() for name, file in HEAD_FILES.items()}
        if not any(present.values()):
            return heads
        if not all(present.values()):
            have = next(HEAD_FILES[name] for name, found in present.items() if found)
            lacking = next(HEAD_FILES[name] for name, found in present.items() if not found)
            raise ConfigError(
                f"{str(folder)!r} has {have} but no {lacking}: BGE-M3 heads are loaded as a pair "
                f"(FlagEmbedding would start both afresh). Add the missing file or remove the other."
            )
        cpu, fp32 = torch.device("cpu"), torch.float32
        for name, layer in (("colbert", heads.colbert_linear), ("sparse", heads.sparse_linear)):
            loaded = load_linear(folder / HEAD_FILES[name], hidden_size, cpu, fp32)
            if loaded.weight.shape != layer.weight.shape or (loaded.bias is None) != (layer.bias is None):
                size = "colbert_dim" if name == "colbert" else "the sparse head (1 output)"
                raise ConfigError(
                    f"{folder / HEAD_FILES[name]} holds a Linear{tuple(loaded.weight.shape[::-1])} "
                    f"(bias: {loaded.bias is not None}); expected Linear{tuple(layer.weight.shape[::-1])} with bias "
                    f"for {size}."
                )
            with torch.no_grad():
                layer.load_state_dict(loaded.state_dict())
        return heads

    def save(self, folder: str | Path) -> None:
        """Write ``colbert_linear.pt`` and ``sparse_linear.pt`` into ``folder`` (CPU state dicts, as FlagEmbedding)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, layer in (("colbert", self.colbert_linear), ("sparse", self.sparse_linear)):
            state = {key: value.detach().clone().cpu() for key, value in layer.state_dict().items()}
            torch.save(state, folder / HEAD_FILES[name])


def _config_hidden_size(folder: Path) -> int:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        return int(config["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"Cannot read the hidden size from {path} ({exc}); pass hidden_size.") from exc


class M3UnifiedLoss(nn.Module):
    """FlagEmbedding's BGE-M3 training objective on a sentence-transformers model.

    The loss gets two feature dicts, the queries' (``B``) and the passages' (``B * group_size``,
    each query's group contiguous, positive first), and the teacher scores as labels
    (``(B, group_size)``) when distilling. ``self.model(features)`` must return
    ``sentence_embedding`` (the pooled, normalized CLS vector) and ``token_embeddings`` (the last
    hidden states); the features must hold ``input_ids`` and ``attention_mask``.

    Args:
        model: The SentenceTransformer being trained (Transformer -> Pooling(cls) -> Normalize); its
            Pooling module's mode is FlagEmbedding's ``sentence_pooling_method``.
        heads: The ColBERT and sparse heads (trained with the model; required with
            ``unified_finetuning``, may be ``None`` without).
        group_size: ``train_group_size``.
        temperature: Scores are divided by it (FlagEmbedding's default 0.02).
        unified_finetuning: Train the sparse and ColBERT heads too (FlagEmbedding's default: off).
        use_self_distill: The ensemble teaches the three scores (with ``unified_finetuning``).
        self_distill_start_step: Self-distillation applies once :attr:`step` is above this.
        kd_loss_type: ``"kl_div"`` or ``"m3_kd_loss"``, used when labels are given.
        negatives_cross_device: Every process's passages are negatives of the dense loss.
        normalize_embeddings: Normalize the dense and ColBERT vectors (FlagEmbedding's default);
            the dense vectors are the model's ``sentence_embedding``, normalized here when the
            model has no Normalize module.
        fix_encoder: Freeze the backbone, train only the heads (sets ``requires_grad=False`` on the
            model's parameters).
        sub_batch_size: Encode in chunks of this many texts (memory; FlagEmbedding's option).

    Attributes:
        step: Training forward passes so far (FlagEmbedding's ``self.step``): one is added after
            each forward pass while the model is in training mode; :class:`M3HeadsCallback` sets it
            when training starts or resumes.

    Raises:
        ConfigError: an invalid option or combination.
    """

    def __init__(
        self,
        model: nn.Module,
        heads: M3Heads | None,
        *,
        group_size: int,
        temperature: float = 0.02,
        unified_finetuning: bool = False,
        use_self_distill: bool = False,
        self_distill_start_step: int = -1,
        kd_loss_type: str = "kl_div",
        negatives_cross_device: bool = False,
        normalize_embeddings: bool = True,
        fix_encoder: bool = False,
        sub_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if kd_loss_type not in KD_LOSS_TYPES:
            raise ConfigError(f"Invalid kd_loss_type {kd_loss_type!r}; valid: {', '.join(KD_LOSS_TYPES)}")
        if temperature <= 0:
            raise ConfigError(f"temperature must be positive, got {temperature}")
        if group_size < 1:
            raise ConfigError(f"group_size must be at least 1, got {group_size}")
        if unified_finetuning and heads is None:
            raise ConfigError("unified_finetuning trains the sparse and ColBERT heads: pass M3Heads.")
        if use_self_distill and not unified_finetuning:
            raise ConfigError("use_self_distill distills the unified ensemble: it needs unified_finetuning.")
        if fix_encoder and not unified_finetuning:
            raise ConfigError("fix_encoder trains only the heads, which only unified_finetuning uses: nothing to train")
        model_normalizes = _has_normalize(model)
        if model_normalizes and not normalize_embeddings:
            raise ConfigError(
                "normalize_embeddings=False, but the model's Normalize module normalizes the dense vectors: "
                "build the model without Normalize."
            )
        self.model = model
        self.heads = heads
        self.group_size = group_size
        self.temperature = temperature
        self.unified_finetuning = unified_finetuning
        self.use_self_distill = use_self_distill
        self.self_distill_start_step = self_distill_start_step
        self.kd_loss_type = kd_loss_type
        self.negatives_cross_device = negatives_cross_device
        self.normalize_embeddings = normalize_embeddings
        self.normalize_dense = normalize_embeddings and not model_normalizes
        self.fix_encoder = fix_encoder
        self.sub_batch_size = sub_batch_size
        self.step = 0
        tokenizer = getattr(model, "tokenizer", None)
        if unified_finetuning and tokenizer is None:
            raise ConfigError("The model has no tokenizer: the sparse head needs its special token ids.")
        ids = unused_token_ids(tokenizer) if tokenizer is not None else np.zeros(0, dtype=np.int64)
        self.unused_ids: Tensor
        self.register_buffer("unused_ids", torch.as_tensor(ids, dtype=torch.long), persistent=False)
        if fix_encoder:
            model.requires_grad_(False)

    # -- encoding --------------------------------------------------------------------------------

    def encode(self, features: dict[str, Any]) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """One feature dict's dense vectors, token weights ``(N, L)`` and ColBERT vectors ``(N, L - 1, D)``.

        The token weights are the sparse head's; they and the ColBERT vectors are ``None`` without
        ``unified_finetuning``.
        """
        parts = [self._encode(chunk) for chunk in chunks(features, self.sub_batch_size)]
        if len(parts) == 1:
            return parts[0]
        dense = torch.cat([p[0] for p in parts], dim=0)
        if not self.unified_finetuning:
            return dense, None, None
        return dense, torch.cat([p[1] for p in parts], dim=0), torch.cat([p[2] for p in parts], dim=0)  # type: ignore[misc]

    def _encode(self, features: dict[str, Any]) -> tuple[Tensor, Tensor | None, Tensor | None]:
        out = self.model(features)
        dense = out["sentence_embedding"]
        if self.normalize_dense:
            dense = F.normalize(dense, dim=-1)
        if not self.unified_finetuning:
            return dense, None, None
        assert self.heads is not None  # checked in __init__
        hidden = out["token_embeddings"]
        weights = torch.relu(self.heads.sparse_linear(hidden)).squeeze(-1)
        mask = features["attention_mask"][:, 1:]
        colbert = self.heads.colbert_linear(hidden[:, 1:]) * mask[:, :, None].to(hidden.dtype)
        if self.normalize_embeddings:
            colbert = F.normalize(colbert, dim=-1)
        return dense, weights, colbert

    def lexical(self, weights: Tensor, input_ids: Tensor, width: int) -> Tensor:
        """Vocabulary-sized sparse vectors ``(N, width)``: each token id's largest weight, special ids zeroed.

        FlagEmbedding's training path scatters into an ``(N, L, vocab)`` tensor and takes the max
        over tokens; ``scatter_reduce(amax)`` gives the same values and gradients (weights are at
        least 0) in ``(N, width)``, and the zeroing is out of place (FlagEmbedding's in-place
        ``*= 0`` is why it cannot use this form in training). ``width`` only needs to exceed every
        id (FlagEmbedding uses the vocabulary size; the inner products are the same).
        """
        sparse = weights.new_zeros(weights.size(0), width).scatter_reduce(-1, input_ids, weights, reduce="amax")
        keep = torch.ones(width, dtype=weights.dtype, device=weights.device)
        unused = self.unused_ids.to(weights.device)
        keep[unused[unused < width]] = 0
        return sparse * keep

    # -- scores ----------------------------------------------------------------------------------

    def dense_score(self, q_reps: Tensor, p_reps: Tensor) -> Tensor:
        """Inner products over the temperature (also the sparse score)."""
        return q_reps @ p_reps.transpose(0, 1) / self.temperature

    def colbert_score(self, q_reps: Tensor, p_reps: Tensor, q_mask: Tensor) -> Tensor:
        """Each query token's best passage token, summed, over the query's token count and the temperature."""
        token_scores = torch.einsum("qin,pjn->qipj", q_reps, p_reps)
        scores = token_scores.max(-1).values.sum(1) / q_mask[:, 1:].sum(-1, keepdim=True)
        return scores / self.temperature

    # -- loss ------------------------------------------------------------------------------------

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        """One batch's loss: ``[query_features, passage_features]``, teacher scores ``(B, group_size)`` or ``None``."""
        queries, passages = list(sentence_features)
        q_dense, q_weights, q_colbert = self.encode(queries)
        p_dense, p_weights, p_colbert = self.encode(passages)
        targets = teacher_distribution(labels, q_dense.size(0))
        scores: dict[str, Tensor] = {}

        def recorded(name: str, score_fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
            def score(q_reps: Tensor, p_reps: Tensor) -> Tensor:
                scores[name] = score_fn(q_reps, p_reps)
                return scores[name]

            return score

        def loss_of(q_reps: Tensor, p_reps: Tensor, name: str, score_fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
            return contrastive_loss(
                q_reps,
                p_reps,
                recorded(name, score_fn),
                group_size=self.group_size,
                teacher_targets=targets,
                kd_loss_type=self.kd_loss_type,
                cross_device=self.negatives_cross_device and name == "dense",
            )

        loss = loss_of(q_dense, p_dense, "dense", self.dense_score)
        if self.unified_finetuning:
            assert q_weights is not None and p_weights is not None and q_colbert is not None and p_colbert is not None
            q_ids, p_ids = queries["input_ids"], passages["input_ids"]
            width = int(max(q_ids.max(), p_ids.max())) + 1
            q_sparse, p_sparse = self.lexical(q_weights, q_ids, width), self.lexical(p_weights, p_ids, width)
            sparse_loss = loss_of(q_sparse, p_sparse, "sparse", self.dense_score)
            q_mask = queries["attention_mask"]
            colbert_loss = loss_of(q_colbert, p_colbert, "colbert", lambda q, p: self.colbert_score(q, p, q_mask))
            dense_scores = scores["dense"]
            if self.negatives_cross_device:  # this process's block: its queries against its passages
                rank, _ = world()
                dense_scores = dense_scores[:, rank * p_dense.size(0) : (rank + 1) * p_dense.size(0)]
            ensemble = dense_scores + ENSEMBLE_SPARSE_WEIGHT * scores["sparse"] + scores["colbert"]
            ensemble_loss = loss_of(q_dense, p_dense, "ensemble", lambda q, p: ensemble)
            loss = (loss + ensemble_loss + SPARSE_LOSS_WEIGHT * sparse_loss + colbert_loss) / 4
            if self.use_self_distill and self.step > self.self_distill_start_step:
                self_targets = torch.softmax(ensemble.detach(), dim=-1)
                self_distill = (
                    kl_distill(self_targets, dense_scores)
                    + SPARSE_LOSS_WEIGHT * kl_distill(self_targets, scores["sparse"])
                    + kl_distill(self_targets, scores["colbert"])
                ) / 3
                loss = (loss + self_distill) / 2
        if self.model.training:
            self.step += 1
        return loss

    @property
    def citation(self) -> str:
        """The paper to cite."""
        return "BGE M3-Embedding (BAAI), https://arxiv.org/abs/2402.03216"


def _has_normalize(model: nn.Module) -> bool:
    from sentence_transformers.base.modules import Normalize  # noqa: PLC0415 - heavy import, only here

    return any(isinstance(module, Normalize) for module in model.modules())


def sync_head_gradients(heads: nn.Module | None) -> None:
    """Average the gradients of ``heads`` across processes (what DDP does for the model); no-op in one process.

    Every process must call it at the same point (before the optimizer step), with the same
    parameters having gradients.
    """
    _, size = world()
    if heads is None or size == 1:
        return
    grads = [p.grad for p in heads.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= size
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


class M3HeadsCallback(TrainerCallback):
    """Keeps :class:`M3UnifiedLoss` and its heads in step with the trainer.

    - ``on_train_begin``: :attr:`M3UnifiedLoss.step` = ``global_step * gradient_accumulation_steps``
      (the training forward passes already done, when resuming).
    - ``on_pre_optimizer_step``: the heads' gradients are averaged across processes
      (:func:`sync_head_gradients`).
    - ``on_save`` (with ``unified_finetuning``, as FlagEmbedding's trainer): the main process
      writes the heads into the checkpoint folder the trainer has just written
      (``<output_dir>/checkpoint-<step>``), so a checkpoint is a complete BGE-M3 folder.

    - ``max_grad_norm`` (given here, with the trainer's own set to 0): after the heads' gradients
      are averaged, the model's and the heads' gradients are clipped together to this norm, as
      FlagEmbedding clips them (its heads are part of its model). The trainer's own clipping sees
      the model's parameters only. Not with fp16 (the gradients are still scaled at this point).

    Resuming restores the
    model and the optimizer; load the heads from the checkpoint (:meth:`M3Heads.from_pretrained`)
    when building the loss. The final ``trainer.save_model`` writes the model only: save the heads
    with :meth:`M3Heads.save` beside it.
    """

    def __init__(self, loss: M3UnifiedLoss, max_grad_norm: float = 0.0) -> None:
        self.loss = loss
        self.max_grad_norm = max_grad_norm

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Set the loss's step count from the trainer's (0, or where a resumed run stands)."""
        self.loss.step = state.global_step * args.gradient_accumulation_steps

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Average the heads' gradients across processes, then clip model and heads together."""
        sync_head_gradients(self.loss.heads)
        if self.max_grad_norm > 0:
            parameters = [*self.loss.model.parameters(), *(self.loss.heads.parameters() if self.loss.heads else ())]
            torch.nn.utils.clip_grad_norm_([p for p in parameters if p.grad is not None], self.max_grad_norm)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        """Write the heads into the checkpoint folder just saved (main process, ``unified_finetuning``)."""
        heads = self.loss.heads
        if not state.is_world_process_zero or not self.loss.unified_finetuning or heads is None or not args.output_dir:
            return
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if folder.is_dir():
            heads.save(folder)


__all__ = [
    "ENSEMBLE_SPARSE_WEIGHT",
    "SPARSE_LOSS_WEIGHT",
    "M3Heads",
    "M3HeadsCallback",
    "M3UnifiedLoss",
    "sync_head_gradients",
]
