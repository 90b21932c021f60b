"""The options of ``bge-rag mine-negatives`` and ``bge-rag score-pairs``, as dataclasses.

The names, defaults and types are those of FlagEmbedding's ``scripts/hn_mine.py`` and
``scripts/add_reranker_score.py``, parsed by ``transformers.HfArgumentParser`` as there: a
command line written for those scripts works here unchanged (``--flag``, ``--flag True/False``,
``--no_flag``, lists as several values). The options added by bge-rag are in
:class:`ReproducibilityArgs`. This module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .negatives import DEFAULT_SEED

EMBEDDER_MODEL_CLASSES = ["encoder-only-base", "encoder-only-m3", "decoder-only-base", "decoder-only-icl"]
RERANKER_MODEL_CLASSES = [
    "encoder-only-base",
    "decoder-only-base",
    "decoder-only-layerwise",
    "decoder-only-lightweight",
]


def _newlines(template: str) -> str:
    """A literal backslash-n typed on a command line as a newline (as hn_mine reads its templates)."""
    return template.replace("\\n", "\n")


@dataclass
class MiningDataArgs:
    """Data options of ``mine-negatives`` (hn_mine's ``DataArgs``)."""

    input_file: str = field(metadata={"help": "JSONL training file: one {query, pos, neg, ...} object per line."})
    output_file: str = field(metadata={"help": "Where to write the lines with their mined negatives."})
    candidate_pool: str | None = field(
        default=None,
        metadata={"help": "JSONL of {'text': ...} lines to mine from (default: every pos and neg text of the input)."},
    )
    range_for_sampling: str = field(
        default="10-210", metadata={"help": "Ranks a-b (from 0, b excluded) of the search results to sample from."}
    )
    negative_number: int = field(default=15, metadata={"help": "Negatives per line."})
    use_gpu_for_searching: bool = field(
        default=False, metadata={"help": "Accepted for hn_mine compatibility; the exact search runs with numpy."}
    )
    search_batch_size: int = field(default=64, metadata={"help": "Queries searched per block."})


@dataclass
class EmbedderArgs:
    """Embedder options of ``mine-negatives`` (hn_mine's ``ModelArgs``)."""

    embedder_name_or_path: str = field(metadata={"help": "Embedding model: hub id or local folder.", "required": True})
    embedder_model_class: str | None = field(
        default=None,
        metadata={
            "help": "Accepted for hn_mine compatibility: bge-rag tells the model class from the model's config.",
            "choices": EMBEDDER_MODEL_CLASSES,
        },
    )
    normalize_embeddings: bool = field(default=True, metadata={"help": "L2-normalize the embeddings."})
    pooling_method: str = field(
        default="cls", metadata={"help": "cls, mean or last_token (default cls for every model, as hn_mine)."}
    )
    use_fp16: bool = field(default=True, metadata={"help": "fp16 on a GPU; the CPU computes fp32 (as FlagEmbedding)."})
    devices: str | None = field(default=None, metadata={"help": "The device to run on (one).", "nargs": "+"})
    query_instruction_for_retrieval: str | None = field(
        default=None, metadata={"help": "Instruction put before queries (default: none, as hn_mine)."}
    )
    query_instruction_format_for_retrieval: str = field(
        default="{}{}", metadata={"help": "Template joining instruction and query."}
    )
    examples_for_task: str | None = field(
        default=None, metadata={"help": "Not supported by bge-rag (an error if set)."}
    )
    examples_instruction_format: str = field(
        default="{}{}", metadata={"help": "Not supported by bge-rag (an error if changed)."}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow the model's own code."})
    cache_dir: str | None = field(default=None, metadata={"help": "Hugging Face cache folder."})
    batch_size: int = field(default=3000, metadata={"help": "Texts per forward pass at most."})
    embedder_query_max_length: int = field(default=512, metadata={"help": "Tokens per query."})
    embedder_passage_max_length: int = field(default=512, metadata={"help": "Tokens per passage."})

    def __post_init__(self) -> None:
        self.query_instruction_format_for_retrieval = _newlines(self.query_instruction_format_for_retrieval)
        self.examples_instruction_format = _newlines(self.examples_instruction_format)


@dataclass
class ReproducibilityArgs:
    """Options of ``mine-negatives`` that hn_mine does not have."""

    seed: int = field(
        default=DEFAULT_SEED,
        metadata={
            "help": f"Seed of the random draws: same input, model and seed, same output (default {DEFAULT_SEED})."
        },
    )
    relative_margin: float | None = field(
        default=None,
        metadata={
            "help": "False-negative guard: drop candidates scoring above pos - abs(pos) * margin "
            "(pos: the lowest positive score), as sentence-transformers."
        },
    )
    absolute_margin: float | None = field(
        default=None, metadata={"help": "False-negative guard: drop candidates scoring above pos - margin."}
    )
    max_score: float | None = field(
        default=None, metadata={"help": "False-negative guard: drop candidates scoring above this."}
    )


@dataclass
class ScoreDataArgs:
    """Data options of ``score-pairs`` (add_reranker_score's ``ScoreArgs``)."""

    input_file: str | None = field(default=None, metadata={"help": "JSONL training file of {query, pos, neg} lines."})
    output_file: str | None = field(
        default=None, metadata={"help": "Where to write the lines with pos_scores and neg_scores added."}
    )


@dataclass
class RerankerArgs:
    """Reranker options of ``score-pairs`` (add_reranker_score's ``ModelArgs``)."""

    use_fp16: bool = field(default=True, metadata={"help": "fp16 on a GPU; the CPU computes fp32 (as FlagEmbedding)."})
    devices: str | None = field(default=None, metadata={"help": "The device to run on (one).", "nargs": "+"})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow the model's own code."})
    reranker_name_or_path: str | None = field(default=None, metadata={"help": "Reranker: hub id or local folder."})
    reranker_model_class: str | None = field(
        default=None,
        metadata={
            "help": "Accepted for compatibility: bge-rag tells the reranker kind from the model's config.",
            "choices": RERANKER_MODEL_CLASSES,
        },
    )
    reranker_peft_path: str | None = field(
        default=None, metadata={"help": "Not supported by bge-rag (an error if set): merge the adapter first."}
    )
    use_bf16: bool = field(
        default=False, metadata={"help": "LLM rerankers: bf16 (fp16 on a GPU wins, as FlagEmbedding)."}
    )
    query_instruction_for_rerank: str | None = field(default=None, metadata={"help": "Instruction put before queries."})
    query_instruction_format_for_rerank: str = field(
        default="{}{}", metadata={"help": "Template joining instruction and query."}
    )
    passage_instruction_for_rerank: str | None = field(
        default=None, metadata={"help": "Instruction put before passages."}
    )
    passage_instruction_format_for_rerank: str = field(
        default="{}{}", metadata={"help": "Template joining instruction and passage."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Hugging Face cache folder."})
    reranker_batch_size: int = field(default=3000, metadata={"help": "Pairs per forward pass at most."})
    reranker_query_max_length: int | None = field(
        default=None, metadata={"help": "Tokens of the query at most (default 3/4 of reranker_max_length)."}
    )
    reranker_max_length: int = field(default=512, metadata={"help": "Tokens per pair."})
    normalize: bool = field(default=False, metadata={"help": "Sigmoid of the scores (default raw logits)."})
    prompt: str | None = field(default=None, metadata={"help": "LLM rerankers: the prompt after the pair."})
    cutoff_layers: list[int] | None = field(
        default=None, metadata={"help": "Layer-wise / lightweight LLM rerankers: the output layer(s)."}
    )
    compress_ratio: int = field(default=1, metadata={"help": "Lightweight LLM reranker: compression ratio."})
    compress_layers: int | None = field(
        default=None, metadata={"help": "Lightweight LLM reranker: layers that compress.", "nargs": "+"}
    )
