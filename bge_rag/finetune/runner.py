"""``finetune_embedder`` / ``finetune_reranker``: one fine-tuning run from parsed options to a served folder."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

from bge_core.errors import ConfigError, ModelLoadError

from .arguments import (
    DataArguments,
    EmbedderTrainingArguments,
    EvalArguments,
    ModelArguments,
    RerankerDataArguments,
    RerankerTrainingArguments,
)
from .card import model_card
from .data import GroupCollator, read_train_data
from .embedder import EmbedderCollator
from .losses import KD_LOSS_TYPES, FlagEmbedderLoss
from .reranker import GroupCrossEntropyLoss, RerankerCollator, build_reranker
from .training import (
    EpochCallback,
    RetrievalEvaluator,
    before_after,
    build_embedder_model,
    check_output_dir,
    check_registry_name,
    freeze_position_embeddings,
    load_eval_dataset,
    training_arguments_record,
    write_results,
)

logger = logging.getLogger(__name__)

# Options of FlagEmbedding's command lines bge-rag refuses (a non-default value is an error naming it).
UNSUPPORTED = {
    "config_name": "FlagEmbedding only logs it; the model's own config.json is used",
    "tokenizer_name": "FlagEmbedding loads the tokenizer of --model_name_or_path whatever this says; so does bge-rag",
    "use_fast_tokenizer": "bge-rag uses the fast tokenizer",
    "same_dataset_within_batch": "batches mix the files' lines (FlagEmbedding's default)",
    "small_threshold": "it applies to --same_dataset_within_batch only",
    "drop_threshold": "it applies to --same_dataset_within_batch only",
}


def check_embedder_options(
    model_args: ModelArguments, data_args: DataArguments, args: EmbedderTrainingArguments, kind: str
) -> None:
    """Every option checked before anything is loaded."""
    from bge_rag.flag_cli import refuse_unsupported

    refuse_unsupported(f"bge-rag finetune {kind}", UNSUPPORTED, model_args, data_args)
    if not data_args.train_data:
        raise ConfigError("--train_data is required: JSONL files or folders of them")
    if args.temperature is None or args.temperature <= 0:
        raise ConfigError(f"--temperature must be positive, got {args.temperature}")
    if args.kd_loss_type not in KD_LOSS_TYPES:
        raise ConfigError(f"--kd_loss_type {args.kd_loss_type!r}: valid values are {', '.join(KD_LOSS_TYPES)}")
    if args.use_mrl and not args.mrl_dims:
        raise ConfigError("--use_mrl needs --mrl_dims (the Matryoshka dimensions, e.g. --mrl_dims 64 128 256)")
    if args.mrl_dims and not args.use_mrl:
        raise ConfigError("--mrl_dims is given without --use_mrl")
    if any(d <= 0 for d in args.mrl_dims):
        raise ConfigError(f"--mrl_dims must be positive, got {args.mrl_dims}")
    if data_args.query_max_len < 1 or data_args.passage_max_len < 1:
        raise ConfigError("--query_max_len and --passage_max_len must be at least 1")
    if data_args.passage_instruction_for_retrieval is not None and data_args.passage_instruction_format != "{}{}":
        raise ConfigError(
            "--passage_instruction_format must be '{}{}' (the instruction before the passage): the folder records "
            "the passage instruction as a sentence-transformers prompt, which is a prefix"
        )
    if kind == "m3" and args.use_mrl:
        raise ConfigError("--use_mrl is not a BGE-M3 option (FlagEmbedding's M3 model has no Matryoshka loss)")
    if kind != "m3":
        m3_only = [n for n in ("unified_finetuning", "use_self_distill", "fix_encoder") if getattr(args, n)]
        if m3_only or args.self_distill_start_step != -1 or model_args.colbert_dim != -1:
            names = m3_only or ["self_distill_start_step" if args.self_distill_start_step != -1 else "colbert_dim"]
            raise ConfigError(f"--{names[0]} is a BGE-M3 option: use bge-rag finetune m3")
    if args.negatives_cross_device and args.world_size < 2:
        logger.warning("--negatives_cross_device with one process: there are no other devices' negatives to add")


def _prepare(data_args: Any, args: Any, eval_args: EvalArguments | None) -> tuple[Path, list[dict[str, Any]], Any]:
    """The checked output folder, training rows and ``--eval_data`` dataset (or ``None``), before any model loads."""
    out = check_output_dir(
        args.output_dir or "", args.resume_from_checkpoint, getattr(args, "overwrite_output_dir", False)
    )
    rows = read_train_data(
        data_args.train_data,
        train_group_size=data_args.train_group_size,
        knowledge_distillation=data_args.knowledge_distillation,
        max_example_num_per_dataset=data_args.max_example_num_per_dataset,
        seed=args.seed,
    )
    return out, rows, load_eval_dataset(eval_args)


def _collator(
    cls: type[GroupCollator],
    tokenizer: Any,
    data_args: Any,
    seed: int,
    *,
    query_instruction: str | None,
    passage_instruction: str | None,
) -> Any:
    """The kind's collator with the run's data options (the instructions under the kind's option names)."""
    return cls(
        tokenizer,
        train_group_size=data_args.train_group_size,
        query_max_len=data_args.query_max_len,
        passage_max_len=data_args.passage_max_len,
        pad_to_multiple_of=data_args.pad_to_multiple_of,
        query_instruction=query_instruction,
        query_instruction_format=data_args.query_instruction_format,
        passage_instruction=passage_instruction,
        passage_instruction_format=data_args.passage_instruction_format,
        shuffle_ratio=data_args.shuffle_ratio,
        seed=seed,
    )


def _fit(trainer: Any, args: Any, group_size: int) -> dict[str, Any]:
    """Train (or resume); the trainer's figures, the wall time and (query, passage) pairs per second."""
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint or None)
    seconds = time.perf_counter() - start
    train = {"train_seconds": round(seconds, 3), "train_loss": round(float(output.training_loss), 6), **output.metrics}
    train["pairs_per_second"] = round(train.get("train_samples_per_second", 0.0) * group_size, 3)
    return train


def _finish(kind: str, out: Path, base: str, record: dict[str, Any], train: dict[str, Any], report: Any) -> Path:
    """The model card and ``finetune_results.json`` beside the saved model."""
    table = report.table() if report is not None else None
    if table:
        logger.info("Before / after fine-tuning:\n%s", table)
    (out / "README.md").write_text(model_card(kind, out, base, record, train, table), encoding="utf-8")
    evaluation = report.to_dict() if report is not None else None
    results = {"kind": kind, "base": base, "arguments": record, "train": train, "evaluation": evaluation}
    write_results(out, {**results, "table": table})
    return out


def _m3_objective(
    model: Any, model_args: ModelArguments, data_args: DataArguments, args: EmbedderTrainingArguments
) -> tuple[Any, list[Any]]:
    """BGE-M3's loss (with its heads under ``--unified_finetuning``) and the callbacks that keep the heads in step.

    The heads come from the checkpoint resumed (``--resume_from_checkpoint``), else the model
    folder (``colbert_linear.pt`` / ``sparse_linear.pt``), else are new. With unified fine-tuning
    the heads' gradients are clipped with the model's (FlagEmbedding clips them together): the
    callback does it and the trainer's own clipping is turned off (on ``args``, the run's copy),
    except with ``--fp16``.
    """
    from bge_core.loading import resolve_model_dir

    from .m3 import M3Heads, M3HeadsCallback, M3UnifiedLoss

    heads = None
    if args.unified_finetuning:
        resumed = args.resume_from_checkpoint
        source = (
            Path(resumed)
            if isinstance(resumed, str) and Path(resumed).is_dir()
            else resolve_model_dir(
                model_args.model_name_or_path, cache_dir=model_args.cache_dir, token=model_args.token
            )
        )
        heads = M3Heads.from_pretrained(source, colbert_dim=model_args.colbert_dim)
    loss = M3UnifiedLoss(
        model,
        heads,
        group_size=data_args.train_group_size,
        temperature=args.temperature,
        unified_finetuning=args.unified_finetuning,
        use_self_distill=args.use_self_distill,
        self_distill_start_step=args.self_distill_start_step,
        kd_loss_type=args.kd_loss_type,
        negatives_cross_device=args.negatives_cross_device,
        normalize_embeddings=args.normalize_embeddings,
        fix_encoder=args.fix_encoder,
        sub_batch_size=args.sub_batch_size,
    )
    clip = 0.0
    if heads is not None and args.max_grad_norm and args.max_grad_norm > 0:
        if args.fp16:
            logger.warning(
                "--fp16: the M3 heads' gradients are not clipped with the model's (FlagEmbedding clips both)"
            )
        else:
            clip, args.max_grad_norm = args.max_grad_norm, 0.0
    return loss, [M3HeadsCallback(loss, clip)]


def _retrievers(before: Any, after: Any, unified: bool) -> list[Any]:
    """Before and after in dense mode, and for unified BGE-M3 also sparse, ColBERT and hybrid (when both have heads)."""
    from bge_core.errors import MissingHeadError
    from bge_rag.evaluation import EmbedderRetriever

    modes = ["dense", "sparse", "colbert", "hybrid"] if unified else ["dense"]
    out = []
    for label, embedder in (("before", before), ("after", after)):
        for mode in modes:
            try:
                out.append(EmbedderRetriever(embedder, mode=mode, name=label if mode == "dense" else f"{label}-{mode}"))
            except MissingHeadError:
                logger.info("%s has no BGE-M3 heads: no %s row", label, mode)
    return out


def finetune_embedder(
    model_args: ModelArguments,
    data_args: DataArguments,
    args: EmbedderTrainingArguments,
    eval_args: EvalArguments | None = None,
    *,
    kind: str = "embedder",
) -> Path:
    """Fine-tune an encoder embedder (``kind="embedder"``) or BGE-M3 (``kind="m3"``) as FlagEmbedding does.

    Args:
        model_args: The checkpoint (FlagEmbedding's model arguments).
        data_args: The training data and its formatting (FlagEmbedding's data arguments).
        args: Training arguments: sentence-transformers' and FlagEmbedding's.
        eval_args: ``--eval_data``: a retrieval dataset measured during training (with
            ``--eval_strategy steps``) and before/after.
        kind: ``"embedder"`` or ``"m3"`` (BGE-M3's unified objective and heads).

    Returns:
        The output folder (the model as a sentence-transformers folder that bge_core and
        FlagEmbedding load too, ``README.md``, ``finetune_results.json``, checkpoints).

    Raises:
        ConfigError: an option that cannot be honoured, a bad output folder.
        InvalidInputError: a bad training line (``file:line``).
    """
    from datasets import Dataset  # type: ignore[import-untyped]
    from sentence_transformers import SentenceTransformerTrainer
    from transformers import set_seed

    check_embedder_options(model_args, data_args, args, kind)
    record = training_arguments_record(model_args, data_args, args, eval_args)
    args = copy.copy(args)  # the run may adjust its copy (BGE-M3's clipping); the caller's stays as given
    out, rows, eval_dataset = _prepare(data_args, args, eval_args)
    check_registry_name(
        out, pooling=args.sentence_pooling_method, query_instruction=data_args.query_instruction_for_retrieval
    )
    set_seed(args.seed)
    model = build_embedder_model(
        model_args.model_name_or_path,
        pooling=args.sentence_pooling_method,
        normalize=args.normalize_embeddings,
        query_instruction=data_args.query_instruction_for_retrieval,
        query_instruction_format=data_args.query_instruction_format,
        passage_instruction=data_args.passage_instruction_for_retrieval,
        trust_remote_code=model_args.trust_remote_code,
        cache_dir=model_args.cache_dir,
        token=model_args.token,
    )
    if args.fix_position_embedding:
        logger.info("Frozen: %s", ", ".join(freeze_position_embeddings(model)))
    collator = _collator(
        EmbedderCollator,
        model.tokenizer,
        data_args,
        args.seed,
        query_instruction=data_args.query_instruction_for_retrieval,
        passage_instruction=data_args.passage_instruction_for_retrieval,
    )
    callbacks: list[Any] = [EpochCallback(collator)]
    if kind == "m3":
        loss, m3_callbacks = _m3_objective(model, model_args, data_args, args)
        callbacks += m3_callbacks
    else:
        loss = FlagEmbedderLoss(
            model,
            group_size=data_args.train_group_size,
            temperature=args.temperature,
            normalize_embeddings=args.normalize_embeddings,
            negatives_cross_device=args.negatives_cross_device,
            kd_loss_type=args.kd_loss_type,
            mrl_dims=args.mrl_dims if args.use_mrl else (),
            sub_batch_size=args.sub_batch_size,
        )
    evaluator = None
    if eval_dataset is not None and args.eval_strategy != "no":
        assert eval_args is not None
        evaluator = RetrievalEvaluator(
            eval_dataset, eval_args.eval_split, eval_args.eval_k_values, eval_args.eval_batch_size
        )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        loss=loss,
        data_collator=collator,
        evaluator=evaluator,
        callbacks=callbacks,
    )
    train = _fit(trainer, args, data_args.train_group_size)
    if not trainer.is_world_process_zero():
        return out
    from sentence_transformers_bge import save_folder

    save_folder(model, out)
    heads = getattr(loss, "heads", None) if getattr(loss, "unified_finetuning", False) else None
    if heads is not None:
        best = trainer.state.best_model_checkpoint if args.load_best_model_at_end else None
        if best:  # the trainer reloaded the best checkpoint's model: its heads go with it
            from .m3 import M3Heads

            heads = M3Heads.from_pretrained(best, colbert_dim=model_args.colbert_dim)
        heads.save(out)
    report = None
    if eval_dataset is not None:
        assert eval_args is not None
        from bge_core import Embedder

        before = Embedder(
            model_args.model_name_or_path,
            precision="fp32",
            pooling=args.sentence_pooling_method,
            query_instruction=data_args.query_instruction_for_retrieval or "",
            query_instruction_format=data_args.query_instruction_format,
            document_instruction=data_args.passage_instruction_for_retrieval or "",
            normalize=args.normalize_embeddings,
            batch_size=eval_args.eval_batch_size,
        )
        after = Embedder(
            out, precision="fp32", normalize=args.normalize_embeddings, batch_size=eval_args.eval_batch_size
        )
        report = before_after(_retrievers(before, after, kind == "m3" and heads is not None), eval_dataset, eval_args)
    return _finish(kind, out, model_args.model_name_or_path, record, train, report)


RERANKER_UNSUPPORTED = {
    **{k: v for k, v in UNSUPPORTED.items() if k in ("config_name", "tokenizer_name", "use_fast_tokenizer")},
    "model_type": "decoder-only (LLM) rerankers are not fine-tuned by bge-rag; use FlagEmbedding's decoder_only runner",
    "sub_batch_size": "FlagEmbedding's encoder reranker does not use it either",
    "colbert_dim": "it is a BGE-M3 option",
}


def finetune_reranker(
    model_args: ModelArguments,
    data_args: RerankerDataArguments,
    args: RerankerTrainingArguments,
    eval_args: EvalArguments | None = None,
) -> Path:
    """Fine-tune a cross-encoder reranker as FlagEmbedding's ``reranker.encoder_only.base`` does.

    Group-wise cross-entropy over each query's (positive, negatives) pairs, formatted as
    FlagEmbedding formats them, plus distillation from ``pos_scores`` / ``neg_scores`` with
    ``--knowledge_distillation``. With ``--eval_data`` and ``--eval_retriever`` the table compares
    the first stage alone, reranked by the checkpoint, and reranked by the fine-tuned model.

    Returns:
        The output folder (a sentence-transformers CrossEncoder folder, which is also a Hugging
        Face sequence-classification folder that bge_core and FlagEmbedding load).

    Raises:
        ConfigError: an option that cannot be honoured, a bad output folder.
        InvalidInputError: a bad training line (``file:line``).
    """
    from datasets import Dataset
    from sentence_transformers import CrossEncoderTrainer
    from transformers import set_seed

    from bge_rag.flag_cli import refuse_unsupported

    refuse_unsupported("bge-rag finetune reranker", RERANKER_UNSUPPORTED, model_args, args)
    if not data_args.train_data:
        raise ConfigError("--train_data is required: JSONL files or folders of them")
    if eval_args is not None and eval_args.eval_data is not None and not eval_args.eval_retriever:
        raise ConfigError("--eval_data for a reranker needs --eval_retriever: the embedder whose candidates it reranks")
    record = training_arguments_record(model_args, data_args, args, eval_args)
    out, rows, eval_dataset = _prepare(data_args, args, eval_args)
    if data_args.query_instruction_for_rerank is not None or data_args.passage_instruction_for_rerank is not None:
        logger.warning(
            "Trained with a reranking instruction: bge_core.Reranker and CrossEncoder score the pairs they are given, "
            "so put the instruction before queries / passages yourself (the model card says which)."
        )
    set_seed(args.seed)
    model = build_reranker(
        model_args.model_name_or_path,
        device="cpu",
        trust_remote_code=model_args.trust_remote_code,
        cache_dir=model_args.cache_dir,
        token=model_args.token,
    )
    collator = _collator(
        RerankerCollator,
        model.tokenizer,
        data_args,
        args.seed,
        query_instruction=data_args.query_instruction_for_rerank,
        passage_instruction=data_args.passage_instruction_for_rerank,
    )
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        loss=GroupCrossEntropyLoss(model, data_args.train_group_size),
        data_collator=collator,
        callbacks=[EpochCallback(collator)],
    )
    train = _fit(trainer, args, data_args.train_group_size)
    if not trainer.is_world_process_zero():
        return out
    from sentence_transformers_bge import save_folder

    save_folder(model, out)
    report = None
    if eval_dataset is not None:
        assert eval_args is not None and eval_args.eval_retriever is not None
        from bge_core import Embedder, Reranker
        from bge_rag.evaluation import EmbedderRetriever, Reranking

        instructions: dict[str, Any] = {
            "query_instruction": data_args.query_instruction_for_rerank,
            "query_instruction_format": data_args.query_instruction_format,
            "passage_instruction": data_args.passage_instruction_for_rerank,
            "passage_instruction_format": data_args.passage_instruction_format,
        }
        first = EmbedderRetriever(
            Embedder(eval_args.eval_retriever, precision="fp32", batch_size=eval_args.eval_batch_size)
        )
        rerankers: list[Any] = [None]
        try:
            base = Reranker(model_args.model_name_or_path, precision="fp32")
        except ModelLoadError as exc:  # not a reranker checkpoint: its head was new; the first stage is the baseline
            logger.info("No 'before' reranking row: %s", exc)
        else:
            rerankers.append(Reranking(base, eval_args.eval_rerank_top_k, "before", False, **instructions))
        tuned = Reranker(out, precision="fp32")
        rerankers.append(Reranking(tuned, eval_args.eval_rerank_top_k, "after", False, **instructions))
        report = before_after([first], eval_dataset, eval_args, rerankers=rerankers)
    return _finish("reranker", out, model_args.model_name_or_path, record, train, report)


__all__ = ["RERANKER_UNSUPPORTED", "UNSUPPORTED", "check_embedder_options", "finetune_embedder", "finetune_reranker"]
