"""One table of known models: pooling, query instruction, length limit and heads.

The pooling methods and instruction formats follow FlagEmbedding's ``AUTO_EMBEDDER_MAPPING``
(``FlagEmbedding/inference/embedder/model_mapping.py``); the instruction texts follow the BGE
model table. A model is found by the last part of its hub id or folder name, case-insensitively
(``BAAI/bge-small-en-v1.5``, ``/models/bge-small-en-v1.5`` and a Hugging Face cache snapshot of
it all resolve to ``bge-small-en-v1.5``). Unknown local folders are described by their
sentence-transformers configuration when they have one (see :func:`describe_folder`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Literal

from .errors import ConfigError

logger = logging.getLogger(__name__)

Pooling = Literal["cls", "mean", "last_token"]
POOLING_MODES: tuple[str, ...] = ("cls", "mean", "last_token")
Task = Literal["embedding", "reranking"]
Head = Literal["sparse", "colbert"]

EN_INSTRUCTION = "Represent this sentence for searching relevant passages: "
ZH_INSTRUCTION = "为这个句子生成表示以用于检索相关文章："
WEB_SEARCH_TASK = "Given a web search query, retrieve relevant passages that answer the query."

#: Default number of tokens a text is truncated to, as in FlagEmbedding (``max_length=512``).
DEFAULT_MAX_LENGTH = 512


@dataclass(frozen=True)
class ModelSpec:
    r"""What bge_core knows about one model.

    Attributes:
        name: Short canonical name, e.g. ``"bge-small-en-v1.5"``.
        family: Model family (``"bge"``, ``"bge-m3"``, ``"bge-reranker"``, ``"e5"``, ...).
        task: ``"embedding"`` or ``"reranking"``.
        pooling: Sentence pooling of an embedding model; ``None`` for rerankers.
        query_instruction: Text put before each query by ``encode_queries`` (``None``: none).
        query_instruction_format: ``str.format`` template taking (instruction, query).
        document_instruction: Text put before each document (only E5 models use one).
        max_length: The longest input the model accepts in tokens (``None``: read the config).
        default_max_length: The truncation length used when the caller gives none.
        heads: Extra output heads the model ships (``"sparse"``, ``"colbert"``).
        architecture: ``"encoder"`` or ``"decoder"`` (LLM-based models).
        trust_remote_code: Whether the model needs its own modelling code to load.
        registered: ``False`` for a local folder described from its own files.
        pooling_includes_prompt: ``False`` when a sentence-transformers Pooling config says
            ``include_prompt: false`` (the instruction's tokens are left out of mean pooling).
        icl: Queries use FlagEmbedding's in-context-learning format (``FlagICLModel``,
            bge-en-icl): optional few-shot examples before the query, ``"\n<response>"`` after it.
        lowercase: Texts are lowercased by the tokenizer (a ``Lowercase`` normalizer put first),
            as sentence-transformers does for a folder whose ``sentence_bert_config.json`` says
            ``do_lower_case: true``. Set only for folders described from their own files:
            registered models follow FlagEmbedding, which reads the tokenizer as it is.
    """

    name: str
    family: str
    task: Task = "embedding"
    pooling: Pooling | None = "cls"
    query_instruction: str | None = None
    query_instruction_format: str = "{}{}"
    document_instruction: str | None = None
    max_length: int | None = 512
    default_max_length: int = DEFAULT_MAX_LENGTH
    heads: frozenset[str] = field(default_factory=frozenset)
    architecture: Literal["encoder", "decoder"] = "encoder"
    trust_remote_code: bool = False
    registered: bool = True
    icl: bool = False
    pooling_includes_prompt: bool = True
    lowercase: bool = False

    def format_query(self, instruction: str, text: str) -> str:
        """Apply ``query_instruction_format`` exactly as FlagEmbedding does."""
        fmt = self.query_instruction_format.replace("\\n", "\n")
        return fmt.format(instruction, text)


def _bge(name: str, instruction: str | None) -> ModelSpec:
    return ModelSpec(name, "bge", pooling="cls", query_instruction=instruction)


def _llm(
    name: str, family: str, fmt: str, *, instruction: str = WEB_SEARCH_TASK, remote: bool = False, icl: bool = False
) -> ModelSpec:
    return ModelSpec(
        name,
        family,
        pooling="last_token",
        query_instruction=instruction,
        query_instruction_format=fmt,
        max_length=None,
        architecture="decoder",
        trust_remote_code=remote,
        icl=icl,
    )


def _e5(name: str) -> ModelSpec:
    return ModelSpec(name, "e5", pooling="mean", query_instruction="query: ", document_instruction="passage: ")


def _reranker(
    name: str,
    max_length: int | None,
    architecture: Literal["encoder", "decoder"] = "encoder",
    *,
    family: str = "bge-reranker",
    remote: bool = False,
) -> ModelSpec:
    return ModelSpec(
        name,
        family,
        task="reranking",
        pooling=None,
        max_length=max_length,
        architecture=architecture,
        trust_remote_code=remote,
    )


_INSTRUCT_QUERY = "Instruct: {}\nQuery: {}"

_SPECS: tuple[ModelSpec, ...] = (
    # BGE v1.5 and v1 (CLS pooling, instruction for queries only)
    *(_bge(f"bge-{size}-en-v1.5", EN_INSTRUCTION) for size in ("small", "base", "large")),
    *(_bge(f"bge-{size}-zh-v1.5", ZH_INSTRUCTION) for size in ("small", "base", "large")),
    *(_bge(f"bge-{size}-en", EN_INSTRUCTION) for size in ("small", "base", "large")),
    *(_bge(f"bge-{size}-zh", ZH_INSTRUCTION) for size in ("small", "base", "large")),
    # BGE-M3: one model, three outputs, no instruction, 8192 tokens
    ModelSpec("bge-m3", "bge-m3", pooling="cls", max_length=8192, heads=frozenset({"sparse", "colbert"})),
    # LLM-based BGE embedders
    _llm("bge-en-icl", "bge-llm", "<instruct>{}\n<query>{}", icl=True),
    _llm("bge-multilingual-gemma2", "bge-llm", "<instruct>{}\n<query>{}"),
    _llm("bge-code-v1", "bge-llm", "<instruct>{}\n<query>{}", remote=True),
    _llm("bge-reasoner-embed-qwen3-8b-0923", "bge-llm", _INSTRUCT_QUERY),
    # Qwen3-Embedding
    *(_llm(f"Qwen3-Embedding-{s}", "qwen3", "Instruct: {}\nQuery:{}") for s in ("0.6B", "4B", "8B")),
    # E5
    _llm("e5-mistral-7b-instruct", "e5", _INSTRUCT_QUERY),
    ModelSpec(
        "multilingual-e5-large-instruct",
        "e5",
        pooling="mean",
        query_instruction=WEB_SEARCH_TASK,
        query_instruction_format=_INSTRUCT_QUERY,
    ),
    *(_e5(f"e5-{s}-v2") for s in ("large", "base", "small")),
    *(_e5(f"multilingual-e5-{s}") for s in ("large", "base", "small")),
    *(_e5(f"e5-{s}") for s in ("large", "base", "small")),
    # GTE
    _llm("gte-Qwen2-7B-instruct", "gte", _INSTRUCT_QUERY, remote=True),
    _llm("gte-Qwen2-1.5B-instruct", "gte", _INSTRUCT_QUERY, remote=True),
    _llm("gte-Qwen1.5-7B-instruct", "gte", _INSTRUCT_QUERY, remote=True),
    ModelSpec("gte-multilingual-base", "gte", pooling="cls", max_length=8192, trust_remote_code=True),
    ModelSpec("gte-large-en-v1.5", "gte", pooling="cls", max_length=8192, trust_remote_code=True),
    ModelSpec("gte-base-en-v1.5", "gte", pooling="cls", max_length=8192, trust_remote_code=True),
    *(ModelSpec(f"gte-{s}", "gte", pooling="mean") for s in ("large", "base", "small")),
    *(ModelSpec(f"gte-{s}-zh", "gte", pooling="cls") for s in ("large", "base", "small")),
    # SFR, Linq, BCE
    _llm("SFR-Embedding-2_R", "sfr", _INSTRUCT_QUERY),
    _llm("SFR-Embedding-Mistral", "sfr", _INSTRUCT_QUERY),
    _llm("Linq-Embed-Mistral", "linq", _INSTRUCT_QUERY),
    ModelSpec("bce-embedding-base_v1", "bce", pooling="cls"),
    # Rerankers: cross-encoders, then the LLM rerankers ("decoder"), which bge_core.rerank runs
    # (their kinds, llm / layerwise / lightweight, are in rerank/decoder.py's REGISTERED_KINDS).
    _reranker("bge-reranker-base", 512),
    _reranker("bge-reranker-large", 512),
    _reranker("bge-reranker-v2-m3", 8192),
    _reranker("bge-reranker-v2-gemma", 8192, "decoder"),
    _reranker("bge-reranker-v2-minicpm-layerwise", 8192, "decoder"),
    _reranker("bge-reranker-v2.5-gemma2-lightweight", 8192, "decoder"),
    # Other cross-encoders FlagEmbedding maps; the Jina and GTE ones ship their own modelling code.
    _reranker("jina-reranker-v2-base-multilingual", None, family="jina", remote=True),
    _reranker("jina-reranker-v1-turbo-en", None, family="jina", remote=True),
    _reranker("gte-multilingual-reranker-base", None, family="gte", remote=True),
    _reranker("bce-reranker-base_v1", 512, family="bce"),
)

_BY_KEY: dict[str, ModelSpec] = {spec.name.lower(): spec for spec in _SPECS}


def model_key(name_or_path: str | PurePath) -> str:
    """The registry key of a hub id or a folder path (last part, lower case).

    A Hugging Face cache snapshot (``.../models--BAAI--bge-m3/snapshots/<hash>``) gives the
    repository's name.
    """
    parts = PurePath(str(name_or_path).rstrip("/\\")).parts
    for part in reversed(parts):
        if part.startswith("models--"):
            return part.split("--")[-1].lower()
    return parts[-1].lower() if parts else ""


def lookup(name_or_path: str | PurePath) -> ModelSpec | None:
    """The registry entry of a hub id or folder, or ``None`` when the model is not known."""
    return _BY_KEY.get(model_key(name_or_path))


def known_models(task: Task | None = None) -> list[str]:
    """Names of the registered models, optionally only those of one task."""
    return [spec.name for spec in _SPECS if task is None or spec.task == task]


def check_pooling(pooling: str) -> Pooling:
    """Validate a pooling name, listing the valid ones when it is wrong."""
    if pooling not in POOLING_MODES:
        raise ConfigError(f"Invalid pooling {pooling!r}. Valid pooling modes are: {', '.join(POOLING_MODES)}.")
    return pooling  # type: ignore[return-value]


# sentence-transformers pooling modes (old boolean keys and the newer ``pooling_mode``).
_ST_LEGACY_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_ST_TO_OURS = {"cls": "cls", "mean": "mean", "lasttoken": "last_token"}


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"Cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else None


def _st_pooling_config(folder: Path) -> tuple[dict | None, Path | None]:
    modules_path = folder / "modules.json"
    if modules_path.is_file():
        try:
            modules = json.loads(modules_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"Cannot read {modules_path}: {exc}") from exc
        for module in modules if isinstance(modules, list) else []:
            if str(module.get("type", "")).rsplit(".", 1)[-1] == "Pooling":
                path = folder / module.get("path", "") / "config.json"
                return _read_json(path), path
    path = folder / "1_Pooling" / "config.json"
    return _read_json(path), path


def st_pooling(folder: Path) -> Pooling | None:
    """The pooling a sentence-transformers folder declares, or ``None`` when it has no config.

    Raises:
        ConfigError: the folder declares a pooling bge_core does not implement.
    """
    config, path = _st_pooling_config(folder)
    if config is None:
        return None
    mode = config.get("pooling_mode")
    if mode is None:
        active = [m for key, m in _ST_LEGACY_KEYS.items() if config.get(key)]
        mode = active if len(active) != 1 else active[0]
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    if not isinstance(mode, str) or mode not in _ST_TO_OURS:
        raise ConfigError(
            f"{path} asks for pooling {mode!r}, which bge_core does not implement; "
            f"pass pooling= one of {', '.join(POOLING_MODES)} to override it."
        )
    return _ST_TO_OURS[mode]  # type: ignore[return-value]


def _encoder_types() -> frozenset[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return frozenset(MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def _causal_types() -> frozenset[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return frozenset(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def folder_architecture(folder: Path) -> Literal["encoder", "decoder"]:
    """Whether a model folder holds a decoder-only (causal, LLM) model, read from its config.json.

    A decoder is a config with ``is_decoder``, an architecture named ``...ForCausalLM``, or a
    ``model_type`` that transformers maps to a causal LM and not to a masked LM (Qwen2, Qwen3,
    Mistral, Gemma, Llama, ... but not BERT or XLM-R, which have both heads).
    """
    config = _read_json(folder / "config.json") or {}
    if config.get("is_decoder") is True:
        return "decoder"
    architectures = config.get("architectures") or []
    if any(isinstance(a, str) and a.endswith("ForCausalLM") for a in architectures):
        return "decoder"
    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type in _causal_types() and model_type not in _encoder_types():
        return "decoder"
    return "encoder"


def describe_folder(folder: Path) -> ModelSpec:
    """A spec for a local folder not in the registry, read from its own files.

    Pooling comes from the folder's sentence-transformers pooling config; without one it is
    last-token pooling for a decoder-only (LLM) model (see :func:`folder_architecture`), as
    FlagEmbedding's ``FlagLLMModel`` does, and CLS (BGE's pooling) for an encoder. The default
    truncation length comes from ``sentence_bert_config.json``'s ``max_seq_length`` (and its
    ``do_lower_case``: lowercased inputs), and the query instruction from a ``"query"`` prompt in
    ``config_sentence_transformers.json``.
    """
    architecture = folder_architecture(folder)
    pooling = st_pooling(folder) or ("last_token" if architecture == "decoder" else "cls")
    pooling_config = _st_pooling_config(folder)[0] or {}
    st_config = _read_json(folder / "sentence_bert_config.json") or {}
    default_max_length = st_config.get("max_seq_length")
    prompts = (_read_json(folder / "config_sentence_transformers.json") or {}).get("prompts") or {}
    query_prompt = prompts.get("query") if isinstance(prompts, dict) else None
    return ModelSpec(
        name=folder.name,
        family="local",
        pooling=pooling,
        query_instruction=query_prompt or None,
        max_length=None,
        default_max_length=int(default_max_length) if isinstance(default_max_length, int) else DEFAULT_MAX_LENGTH,
        architecture=architecture,
        registered=False,
        pooling_includes_prompt=pooling_config.get("include_prompt", True) is not False,
        lowercase=st_config.get("do_lower_case") is True,
    )


def resolve_spec(name_or_path: str | PurePath, folder: Path | None, task: Task) -> ModelSpec:
    """The registry entry of a model, or a description of its local folder."""
    spec = lookup(name_or_path)
    if spec is None and folder is not None:
        spec = lookup(folder)
    if spec is None:
        if task == "reranking":
            return ModelSpec(
                model_key(name_or_path), "local", task="reranking", pooling=None, max_length=None, registered=False
            )
        return (
            describe_folder(folder)
            if folder is not None
            else ModelSpec(model_key(name_or_path), "local", max_length=None, registered=False)
        )
    return spec


__all__ = [
    "DEFAULT_MAX_LENGTH",
    "EN_INSTRUCTION",
    "ZH_INSTRUCTION",
    "ModelSpec",
    "POOLING_MODES",
    "check_pooling",
    "describe_folder",
    "folder_architecture",
    "known_models",
    "lookup",
    "model_key",
    "resolve_spec",
    "st_pooling",
]
