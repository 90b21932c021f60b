"""The options of ``bge-rag finetune``: FlagEmbedding's argument classes, field for field.

``python -m FlagEmbedding.finetune.embedder.encoder_only.base|m3`` and
``python -m FlagEmbedding.finetune.reranker.encoder_only.base`` command lines run unchanged with
``bge-rag finetune embedder|m3|reranker``: the model and data classes have FlagEmbedding's fields,
names and defaults, and the training classes add FlagEmbedding's fields to sentence-transformers'
training arguments (which are Hugging Face ``TrainingArguments``: ``--output_dir --learning_rate
--num_train_epochs --max_steps --per_device_train_batch_size --gradient_accumulation_steps
--warmup_steps --bf16 --fp16 --gradient_checkpointing --seed --save_steps --logging_steps ...``).
:class:`EvalArguments` is ours: the evaluation during and after training.

Options bge-rag cannot honour are refused by name (see ``UNSUPPORTED``), never ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from sentence_transformers import CrossEncoderTrainingArguments, SentenceTransformerTrainingArguments


def _newlines(template: str | None) -> str | None:
    # FlagEmbedding's __post_init__: a literal "\n" typed on the command line is a newline.
    return template.replace("\\n", "\n") if template is not None else None


@dataclass
class ModelArguments:
    """FlagEmbedding's ``AbsEmbedderModelArguments`` / ``AbsRerankerModelArguments`` (+ M3's ``colbert_dim``)."""

    model_name_or_path: str = field(metadata={"help": "The model checkpoint for initialization (hub id or folder)."})
    config_name: str | None = field(default=None, metadata={"help": "Not supported (FlagEmbedding only logs it)."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Not supported (FlagEmbedding ignores it)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to store models downloaded from the Hub."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Trust the model's own code."})
    use_fast_tokenizer: bool = field(default=True, metadata={"help": "Use a fast tokenizer (the only kind here)."})
    token: str | None = field(
        default_factory=lambda: os.getenv("HF_TOKEN", None), metadata={"help": "Hugging Face access token."}
    )
    colbert_dim: int = field(default=-1, metadata={"help": "M3: ColBERT vector size (-1: the hidden size)."})
    model_type: str = field(default="encoder", metadata={"help": "Reranker: 'encoder' (decoder: not supported)."})


@dataclass
class DataArguments:
    """FlagEmbedding's ``AbsEmbedderDataArguments``."""

    train_data: list[str] = field(
        default_factory=list, metadata={"help": "JSONL training files, or folders of them.", "nargs": "+"}
    )
    cache_path: str | None = field(default=None, metadata={"help": "Accepted; bge-rag keeps no data cache."})
    train_group_size: int = field(default=8, metadata={"help": "Passages per query: 1 positive + negatives."})
    query_max_len: int = field(default=32, metadata={"help": "Queries are truncated to this many tokens."})
    passage_max_len: int = field(default=128, metadata={"help": "Passages are truncated to this many tokens."})
    pad_to_multiple_of: int | None = field(default=None, metadata={"help": "Pad batches to a multiple of this."})
    max_example_num_per_dataset: int = field(default=100000000, metadata={"help": "At most this many lines a file."})
    query_instruction_for_retrieval: str | None = field(default=None, metadata={"help": "Instruction for queries."})
    query_instruction_format: str = field(default="{}{}", metadata={"help": "Format of instruction and query."})
    knowledge_distillation: bool = field(default=False, metadata={"help": "Distil from pos_scores / neg_scores."})
    passage_instruction_for_retrieval: str | None = field(default=None, metadata={"help": "Instruction for passages."})
    passage_instruction_format: str = field(default="{}{}", metadata={"help": "Format of instruction and passage."})
    shuffle_ratio: float = field(default=0.0, metadata={"help": "Share of long positives whose thirds are shuffled."})
    same_dataset_within_batch: bool = field(default=False, metadata={"help": "Not supported."})
    small_threshold: int = field(default=0, metadata={"help": "Not supported (same_dataset_within_batch)."})
    drop_threshold: int = field(default=0, metadata={"help": "Not supported (same_dataset_within_batch)."})

    def __post_init__(self) -> None:
        self.query_instruction_format = _newlines(self.query_instruction_format) or "{}{}"
        self.passage_instruction_format = _newlines(self.passage_instruction_format) or "{}{}"


@dataclass
class RerankerDataArguments:
    """FlagEmbedding's ``AbsRerankerDataArguments``."""

    train_data: list[str] = field(
        default_factory=list, metadata={"help": "JSONL training files, or folders of them.", "nargs": "+"}
    )
    cache_path: str | None = field(default=None, metadata={"help": "Accepted; bge-rag keeps no data cache."})
    train_group_size: int = field(default=8, metadata={"help": "Pairs per query: 1 positive + negatives."})
    query_max_len: int = field(default=32, metadata={"help": "Token budget of the query in a pair."})
    passage_max_len: int = field(default=128, metadata={"help": "Token budget of the passage in a pair."})
    max_len: int = field(default=512, metadata={"help": "Decoder rerankers only; not used by encoder rerankers."})
    pad_to_multiple_of: int | None = field(default=None, metadata={"help": "Pad batches to a multiple of this."})
    max_example_num_per_dataset: int = field(default=100000000, metadata={"help": "At most this many lines a file."})
    query_instruction_for_rerank: str | None = field(default=None, metadata={"help": "Instruction for queries."})
    query_instruction_format: str = field(default="{}{}", metadata={"help": "Format of instruction and query."})
    knowledge_distillation: bool = field(default=False, metadata={"help": "Distil from pos_scores / neg_scores."})
    passage_instruction_for_rerank: str | None = field(default=None, metadata={"help": "Instruction for passages."})
    passage_instruction_format: str = field(default="{}{}", metadata={"help": "Format of instruction and passage."})
    shuffle_ratio: float = field(default=0.0, metadata={"help": "Share of long positives whose thirds are shuffled."})
    sep_token: str = field(default="\n", metadata={"help": "Decoder rerankers only."})

    def __post_init__(self) -> None:
        self.query_instruction_format = _newlines(self.query_instruction_format) or "{}{}"
        self.passage_instruction_format = _newlines(self.passage_instruction_format) or "{}{}"


@dataclass
class EmbedderTrainingArguments(SentenceTransformerTrainingArguments):
    """sentence-transformers' training arguments plus FlagEmbedding's embedder and M3 training fields.

    The fields of ``AbsEmbedderTrainingArguments`` and ``EncoderOnlyEmbedderM3TrainingArguments``.
    """

    negatives_cross_device: bool = field(default=False, metadata={"help": "Share negatives across processes."})
    temperature: float = field(default=0.02, metadata={"help": "Scores are divided by it."})
    fix_position_embedding: bool = field(default=False, metadata={"help": "Freeze the position embeddings."})
    sentence_pooling_method: str = field(
        default="cls", metadata={"help": "Pooling: cls, mean or last_token.", "choices": ["cls", "mean", "last_token"]}
    )
    normalize_embeddings: bool = field(default=True, metadata={"help": "L2-normalize the embeddings."})
    sub_batch_size: int | None = field(default=None, metadata={"help": "Encode in chunks of this many texts."})
    kd_loss_type: str = field(
        default="kl_div", metadata={"help": "Distillation loss.", "choices": ["kl_div", "m3_kd_loss"]}
    )
    use_mrl: bool = field(default=False, metadata={"help": "Matryoshka representation learning."})
    mrl_dims: list[int] = field(default_factory=list, metadata={"help": "Matryoshka dimensions.", "nargs": "+"})
    unified_finetuning: bool = field(default=False, metadata={"help": "M3: train dense, sparse and ColBERT."})
    use_self_distill: bool = field(default=False, metadata={"help": "M3: self-distillation from the ensemble."})
    fix_encoder: bool = field(default=False, metadata={"help": "M3: train the heads only."})
    self_distill_start_step: int = field(default=-1, metadata={"help": "M3: step self-distillation starts."})


@dataclass
class RerankerTrainingArguments(CrossEncoderTrainingArguments):
    """sentence-transformers' cross-encoder training arguments with FlagEmbedding's reranker field."""

    sub_batch_size: int | None = field(default=None, metadata={"help": "Not supported for rerankers."})


@dataclass
class EvalArguments:
    """Evaluation during and after training (bge-rag's own options; FlagEmbedding has none)."""

    eval_data: str | None = field(
        default=None,
        metadata={"help": "A retrieval dataset folder (bge-rag eval's layouts) to measure before, during and after."},
    )
    eval_split: str = field(default="dev", metadata={"help": "Split measured during training (--eval_strategy)."})
    eval_test_split: str | None = field(
        default=None, metadata={"help": "Split of the before/after table (default: --eval_split)."}
    )
    eval_k_values: list[int] = field(
        default_factory=lambda: [1, 10, 100], metadata={"help": "Metric cutoffs.", "nargs": "+"}
    )
    eval_batch_size: int = field(default=64, metadata={"help": "Texts per batch when encoding for evaluation."})
    eval_retriever: str | None = field(
        default=None, metadata={"help": "Reranker evaluation: the embedder whose candidates are reranked."}
    )
    eval_rerank_top_k: int = field(default=100, metadata={"help": "Reranker evaluation: candidates per query."})


__all__ = [
    "DataArguments",
    "EmbedderTrainingArguments",
    "EvalArguments",
    "ModelArguments",
    "RerankerDataArguments",
    "RerankerTrainingArguments",
]
