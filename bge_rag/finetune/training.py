"""Running a fine-tuning: sentence-transformers' trainers with FlagEmbedding's data and losses.

:func:`finetune_embedder` (base embedders and BGE-M3) and :func:`finetune_reranker` check every
option and the data before any weight is loaded, build the model from the checkpoint with the
settings it is trained with (pooling, instruction, normalization), train with
``SentenceTransformerTrainer`` / ``CrossEncoderTrainer`` (so checkpoints, resuming, mixed
precision, gradient accumulation and checkpointing, and data parallelism through ``torchrun`` /
``accelerate launch`` are Hugging Face's), then write ``--output_dir`` as a complete model folder
that bge_core, sentence-transformers and FlagEmbedding load with the training settings, with a
model card holding the training arguments and, with ``--eval_data``, the before/after table.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sentence_transformers.base.evaluation import BaseEvaluator
from transformers import TrainerCallback

from bge_core.errors import ConfigError
from bge_core.registry import lookup

from .arguments import EvalArguments

logger = logging.getLogger(__name__)

RESULTS_FILE = "finetune_results.json"


class EpochCallback(TrainerCallback):
    """Tells the collator the epoch, so each epoch samples new groups (reproducibly)."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Set the collator's epoch from the trainer's state."""
        self.collator.epoch = int(state.epoch or 0)


class ModelRetriever:
    """The model being trained as a :class:`bge_rag.evaluation.Retriever` (exact dense search)."""

    def __init__(self, model: Any, batch_size: int, name: str = "model") -> None:
        self.model = model
        self.batch_size = batch_size
        self.name = name

    def retrieve(self, dataset: Any, queries: Mapping[str, str], top_k: int) -> dict[str, dict[str, float]]:
        """Top ``top_k`` documents of each query by inner product of the model's vectors."""
        from bge_rag.evaluation import dense_search, ranked

        qids = list(queries)
        docs = self.model.encode_document(
            [d.full_text for d in dataset.corpus.values()], batch_size=self.batch_size, convert_to_numpy=True
        )
        q = self.model.encode_query([queries[i] for i in qids], batch_size=self.batch_size, convert_to_numpy=True)
        values, indices = dense_search(np.asarray(q, np.float32), np.asarray(docs, np.float32), top_k)
        return ranked(qids, list(dataset.corpus), values, indices)


class RetrievalEvaluator(BaseEvaluator):
    """FlagEmbedding's retrieval metrics of the model on a split, for the trainer's evaluation steps.

    Metrics are named ``{split}_{metric}`` (``dev_ndcg_at_10``); the trainer logs them as
    ``eval_dev_ndcg_at_10``, the name ``--metric_for_best_model`` takes.
    """

    def __init__(self, dataset: Any, split: str, k_values: Sequence[int], batch_size: int = 64) -> None:
        super().__init__()
        dataset.split(split)  # an unknown split is an error now, not at the first evaluation
        self.dataset = dataset
        self.split = split
        self.k_values = list(k_values)
        self.batch_size = batch_size
        self.name = split
        self.primary_metric = "ndcg_at_10" if 10 in self.k_values else f"ndcg_at_{self.k_values[0]}"
        self.greater_is_better = True

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """The split's metrics for the model as it is now (``{split}_{metric}``)."""
        from bge_rag.evaluation import evaluate

        retriever = ModelRetriever(model, self.batch_size)
        report = evaluate(retriever, self.dataset, splits=self.split, k_values=self.k_values, show_progress=False)
        metrics = self.prefix_name_to_metrics(report.metrics(retriever.name, split=self.split), self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics


def check_output_dir(output_dir: str, resume: str | bool | None, overwrite: bool = False) -> Path:
    """FlagEmbedding's rule: an existing, non-empty ``--output_dir`` needs ``--resume_from_checkpoint``."""
    out = Path(output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output_dir {str(out)!r} is a file")
    if out.is_dir() and any(out.iterdir()) and not resume and not overwrite:
        raise ConfigError(
            f"--output_dir {str(out)!r} exists and is not empty; use a new folder, or --resume_from_checkpoint "
            "to continue a run there"
        )
    return out


def check_registry_name(out: Path, *, pooling: str, query_instruction: str | None) -> None:
    """Refuse an output folder named like a registered model whose settings differ from the training's.

    bge_core reads a folder named ``bge-base-en-v1.5`` (say) with the registry's pooling and
    instruction, not the folder's own files, so the model would be served with other settings.
    """
    spec = lookup(out)
    if spec is None:
        return
    if spec.pooling != pooling or (spec.query_instruction or None) != (query_instruction or None):
        raise ConfigError(
            f"--output_dir {str(out)!r} is named like the registered model {spec.name!r} (pooling {spec.pooling}, "
            f"instruction {spec.query_instruction!r}), but this run trains pooling {pooling} with instruction "
            f"{query_instruction!r}; bge_core would serve the folder with the registry's settings. Name it otherwise."
        )


def freeze_position_embeddings(model: Any) -> list[str]:
    """FlagEmbedding's ``--fix_position_embedding``: parameters named ``position_embeddings`` stop training."""
    frozen = []
    for name, parameter in model.named_parameters():
        if "position_embeddings" in name:
            parameter.requires_grad = False
            frozen.append(name)
    return frozen


def _reference(args: Any) -> Any:
    """A default instance of ``args``'s class (required fields copied), to tell what the user changed.

    Training arguments are rebuilt on the process state ``args`` configured (sentence-transformers'
    trainer does the same): a fresh ``TrainingArguments`` would otherwise reset the shared
    accelerate state to its own defaults (one CPU process), under a distributed run too.
    """
    from transformers import TrainingArguments

    required = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(args)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    if isinstance(args, TrainingArguments):
        _ = args.world_size  # the process state is set up from args, before the reference uses it
        config: Any = args.accelerator_config  # an AcceleratorConfig once the arguments are built
        required["accelerator_config"] = dataclasses.replace(config, use_configured_state=True)
    try:
        return type(args)(**required)
    except Exception:  # noqa: BLE001 - a class that cannot be rebuilt: compare with the declared defaults
        return None


def training_arguments_record(*parsed: Any) -> dict[str, Any]:
    """The options that differ from their defaults, for the model card and the results file (tokens left out)."""
    record: dict[str, Any] = {}
    for args in parsed:
        if args is None:
            continue
        reference = _reference(args)
        for f in dataclasses.fields(args):
            if not f.init or f.name in ("token", "hub_token"):
                continue
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required:
                record[f.name] = getattr(args, f.name)
                continue
            if reference is not None:
                default = getattr(reference, f.name)
            else:
                default = f.default_factory() if callable(f.default_factory) else f.default
            value = getattr(args, f.name)
            if value == default or repr(value) == repr(default):
                continue
            try:
                json.dumps(value)
            except TypeError:
                value = str(value)
            record[f.name] = value
    return record


def load_eval_dataset(eval_args: EvalArguments | None) -> Any:
    """The ``--eval_data`` dataset (checked now, before training), or ``None``."""
    if eval_args is None or eval_args.eval_data is None:
        return None
    from bge_rag.evaluation import load_dataset

    splits = dict.fromkeys([eval_args.eval_split, eval_args.eval_test_split or eval_args.eval_split])
    return load_dataset(eval_args.eval_data, list(splits))


def before_after(
    retrievers: Sequence[Any], dataset: Any, eval_args: EvalArguments, rerankers: Sequence[Any] = (None,)
) -> Any:
    """The before/after report on the test split (``--eval_test_split``, else ``--eval_split``)."""
    from bge_rag.evaluation import compare

    return compare(
        retrievers,
        dataset,
        rerankers=rerankers,
        splits=eval_args.eval_test_split or eval_args.eval_split,
        k_values=eval_args.eval_k_values,
        show_progress=False,
    )


def write_results(out: Path, record: Mapping[str, Any]) -> Path:
    """``finetune_results.json`` in the output folder: arguments, evaluation, timings."""
    path = out / RESULTS_FILE
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def build_embedder_model(
    model_name_or_path: str,
    *,
    pooling: str = "cls",
    normalize: bool = True,
    query_instruction: str | None = None,
    query_instruction_format: str = "{}{}",
    passage_instruction: str | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | None = None,
    token: str | None = None,
) -> Any:
    """The SentenceTransformer trained: the checkpoint with the run's pooling, instruction and normalization.

    Modules: Transformer -> Pooling -> Normalize (left out with ``normalize=False``, even when the
    checkpoint's own folder has one, as FlagEmbedding's ``--normalize_embeddings False`` trains
    raw vectors); prompts ``{"query": instruction, "document": passage instruction}``.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize

    from sentence_transformers_bge import build_sentence_transformer

    model = build_sentence_transformer(
        model_name_or_path,
        pooling=pooling,
        query_instruction=query_instruction or "",
        query_instruction_format=query_instruction_format,
        document_instruction=passage_instruction or "",
        normalize=normalize,
        device="cpu",
        trust_remote_code=trust_remote_code,
        cache_dir=cache_dir,
        token=token,
    )
    if not normalize and any(isinstance(m, Normalize) for m in model):
        model = SentenceTransformer(
            modules=[m for m in model if not isinstance(m, Normalize)],
            prompts={name: text for name, text in model.prompts.items() if text is not None},
            similarity_fn_name="dot",
            device="cpu",
        )
    return model


__all__ = [
    "RESULTS_FILE",
    "EpochCallback",
    "ModelRetriever",
    "RetrievalEvaluator",
    "before_after",
    "build_embedder_model",
    "check_output_dir",
    "check_registry_name",
    "freeze_position_embeddings",
    "load_eval_dataset",
    "training_arguments_record",
    "write_results",
]
