"""sentence-transformers models built from BGE checkpoints, and saved as folders.

Every builder reads the model's settings (pooling, query instruction, max length, heads) from
``bge_core`` (the registry and the same overrides :class:`bge_core.Embedder` /
:class:`bge_core.Reranker` take), then assembles sentence-transformers' own modules around the
checkpoint's weights. :func:`export` saves the result in the current sentence-transformers
format (``modules.json`` with a folder per module), written by sentence-transformers' ``save``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from sentence_transformers import CrossEncoder, MultiVectorEncoder, SentenceTransformer, SparseEncoder
from sentence_transformers.base.modules import Dense, Normalize, Transformer
from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
from sentence_transformers.sentence_transformer.modules import Pooling

from bge_core import Embedder, Reranker
from bge_core.errors import ConfigError, ModelLoadError, UnsupportedModelError
from bge_core.heads import load_head, unused_token_ids
from bge_core.loading import quiet_transformers, resolve_model_dir

from . import m3_lexical_weights
from .m3_lexical_weights import M3LexicalWeights
from .model_card import model_card

logger = logging.getLogger(__name__)

Kind = Literal["dense", "sparse", "colbert", "reranker"]
KINDS: tuple[str, ...] = ("dense", "sparse", "colbert", "reranker")
Activation = Literal["identity", "sigmoid"]
ACTIVATIONS: dict[str, type[torch.nn.Module]] = {"identity": torch.nn.Identity, "sigmoid": torch.nn.Sigmoid}

# bge_core pooling names -> sentence-transformers Pooling modes.
_ST_POOLING = {"cls": "cls", "mean": "mean", "last_token": "lasttoken"}
# The type an exported sparse folder's modules.json gives the lexical module: the module file
# copied next to it, so the folder loads with trust_remote_code=True even without bge-rag.
PORTABLE_SPARSE_TYPE = f"{Path(m3_lexical_weights.__file__).stem}.{M3LexicalWeights.__name__}"
# What folders written by earlier versions of this package may name instead (bge-rag needed).
_PACKAGE_SPARSE_TYPE = f"{M3LexicalWeights.__module__}.{M3LexicalWeights.__name__}"
_TRANSFORMER_TYPE = f"{Transformer.__module__}.{Transformer.__name__}"
_CPU = torch.device("cpu")
# Dense folders are written with the module types and config keys of sentence-transformers 2.x-5.x,
# which 6.x reads too (its deprecated-import table), so one folder serves both major versions.
_LEGACY_DENSE_TYPES = {
    "Transformer": "sentence_transformers.models.Transformer",
    "Pooling": "sentence_transformers.models.Pooling",
    "Normalize": "sentence_transformers.models.Normalize",
}
_LEGACY_POOLING_KEYS = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}


@functools.cache
def lexical_weights_class() -> type[M3LexicalWeights]:
    """The :class:`M3LexicalWeights` class bge-rag builds sparse models with.

    It is this package's own ``m3_lexical_weights.py``, imported the way sentence-transformers
    imports a folder's custom module with ``trust_remote_code=True`` (transformers' dynamic
    modules, cached under ``HF_MODULES_CACHE``). sentence-transformers saves a model holding such a
    module with the portable type ``m3_lexical_weights.M3LexicalWeights`` and a copy of the file,
    so the folder a user saves (``save``, ``push_to_hub``, training) loads again wherever
    sentence-transformers is installed, with or without bge-rag. The class imported from
    ``sentence_transformers_bge.m3_lexical_weights`` computes the same, but a model saved with
    it would name bge-rag's module path.
    """
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    source = Path(m3_lexical_weights.__file__)
    return get_class_from_dynamic_module(
        f"{source.stem}.{M3LexicalWeights.__name__}", str(source.parent), local_files_only=True
    )


@dataclasses.dataclass(frozen=True)
class _Settings:
    """What bge_core resolved for an embedding model: where it is and how it encodes."""

    folder: Path
    max_length: int
    pooling: str
    normalize: bool
    prompts: dict[str, str]
    hidden_size: int
    trust_remote_code: bool
    #: Module names after Pooling in the source folder's own modules.json (an ST folder), e.g. ("Normalize",).
    post_modules: tuple[str, ...]
    registered: bool
    #: The engine lowercases inputs (an unregistered folder whose sentence_bert_config.json says so).
    lowercase: bool


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _trusted(registry_choice: bool, trust_remote_code: bool | None) -> bool:
    """Whether the model's own code runs: the caller's choice, else the registry's."""
    return registry_choice if trust_remote_code is None else bool(trust_remote_code)


def _query_prompt(embedder: Embedder) -> str:
    """The query instruction as a sentence-transformers prompt (a text prefix), "" for none."""
    if not embedder.query_instruction:
        return ""
    spec = dataclasses.replace(embedder.spec, query_instruction_format=embedder.query_instruction_format)
    prefix = spec.format_query(embedder.query_instruction, "")
    sentinel = "\x00query\x00"
    if spec.format_query(embedder.query_instruction, sentinel) != prefix + sentinel:
        raise ConfigError(
            f"query_instruction_format {embedder.query_instruction_format!r} puts text after the query; a "
            f"sentence-transformers prompt can only be put before it. Pass a format ending with the query ('...{{}}')."
        )
    return prefix


def _embedding_settings(model: str | Path, trust_remote_code: bool | None, **options: Any) -> _Settings:
    """Resolve an embedding model's settings exactly as ``bge_core.Embedder`` does (fp32, CPU)."""
    from transformers import AutoConfig

    embedder = Embedder(model, device="cpu", precision="fp32", trust_remote_code=trust_remote_code, **options)
    prompts = {"query": _query_prompt(embedder), "document": embedder.document_instruction or ""}
    trust = _trusted(embedder.spec.trust_remote_code, trust_remote_code)
    config = AutoConfig.from_pretrained(str(embedder.folder), trust_remote_code=trust)
    return _Settings(
        folder=embedder.folder,
        max_length=embedder.max_length,
        pooling=embedder.pooling,
        normalize=embedder.normalize,
        prompts=prompts,
        hidden_size=int(config.hidden_size),  # the backbone's: the M3 heads read its hidden states
        trust_remote_code=trust,
        post_modules=_post_pooling_modules(embedder.folder),
        registered=embedder.spec.registered,
        lowercase=embedder.spec.lowercase,
    )


def _post_pooling_modules(folder: Path) -> tuple[str, ...]:
    """The short names of the modules after Pooling in ``folder``'s modules.json (none without one)."""
    path = folder / "modules.json"
    if not path.is_file():
        return ()
    names = [str(entry.get("type", "")).rsplit(".", 1)[-1] for entry in _read_json(path)]
    return tuple(names[names.index("Pooling") + 1 :]) if "Pooling" in names else ()


def _m3_settings_and_head(
    model: str | Path, head: Literal["sparse", "colbert"], trust_remote_code: bool | None, **options: Any
) -> tuple[_Settings, torch.nn.Linear]:
    """The settings of a BGE-M3 model and one of its heads (fp32, CPU); raises ``MissingHeadError`` without it."""
    settings = _embedding_settings(model, trust_remote_code, **options)
    return settings, load_head(settings.folder, head, settings.hidden_size, _CPU, torch.float32)


def _transformer(
    folder: Path, max_length: int, trust_remote_code: bool, task: str = "feature-extraction", lowercase: bool = False
) -> Transformer:
    hub = {"trust_remote_code": True} if trust_remote_code else {}
    return Transformer(
        str(folder),
        transformer_task=task,
        max_seq_length=max_length,
        do_lower_case=lowercase,
        model_kwargs=dict(hub),
        processor_kwargs=dict(hub),
        config_kwargs=dict(hub),
    )


def _embedding_transformer(settings: _Settings) -> Transformer:
    return _transformer(settings.folder, settings.max_length, settings.trust_remote_code, lowercase=settings.lowercase)


def _skipped_first_token(tokenizer: Any, folder: Path) -> str:
    """The token BGE-M3's ColBERT output drops: the CLS token every text starts with."""
    cls_token, cls_id = getattr(tokenizer, "cls_token", None), getattr(tokenizer, "cls_token_id", None)
    ids = tokenizer("a")["input_ids"]
    if cls_token is None or cls_id is None or not ids or ids[0] != cls_id:
        raise ModelLoadError(
            f"The tokenizer of {str(folder)!r} does not start texts with a CLS token; BGE-M3's ColBERT output "
            f"drops that first token, so this model cannot be exported as kind='colbert'."
        )
    return str(cls_token)


def build_sentence_transformer(
    model: str | Path,
    *,
    pooling: str | None = None,
    query_instruction: str | None = None,
    query_instruction_format: str | None = None,
    document_instruction: str | None = None,
    max_length: int | None = None,
    normalize: bool = True,
    device: str | None = None,
    trust_remote_code: bool | None = None,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
) -> SentenceTransformer:
    """A dense ``SentenceTransformer`` giving ``bge_core.Embedder``'s dense vectors.

    Modules: Transformer -> Pooling (the model's pooling) -> Normalize (unless ``normalize=False``);
    prompts ``{"query": <query instruction>, "document": <document instruction or "">}``;
    similarity cosine. ``encode_query`` / ``encode_document`` then equal
    ``Embedder(..., precision="fp32").encode_queries`` / ``encode_documents``.

    Args:
        model: Hub id or local folder of a BGE (or other registered) embedding model.
        pooling: ``"cls"``, ``"mean"`` or ``"last_token"``, as for :class:`bge_core.Embedder`;
            ``None`` takes the registry's value.
        query_instruction: Instruction put before queries (the ``"query"`` prompt), as for
            :class:`bge_core.Embedder`; ``None`` takes the registry's value, ``""`` none.
        query_instruction_format: Template joining instruction and query, as for
            :class:`bge_core.Embedder`; ``None`` takes the registry's value.
        document_instruction: Text put before documents (the ``"document"`` prompt), as for
            :class:`bge_core.Embedder`; ``None`` takes the registry's value, ``""`` none.
        max_length: Tokens a text is truncated to, as for :class:`bge_core.Embedder`; ``None``
            takes the registry's value.
        normalize: L2-normalize the vectors (a Normalize module after Pooling), as for
            :class:`bge_core.Embedder`.
        device: Device of the returned model (sentence-transformers' default when ``None``).
        trust_remote_code: Allow a model's own code, as for :class:`bge_core.Embedder`; ``None``
            takes the registry's value.
        cache_dir: Hugging Face cache folder for Hub ids, as for :class:`bge_core.Embedder`.
        revision: Model revision (branch, tag or commit) on the Hub, as for :class:`bge_core.Embedder`.
        token: Hugging Face token for private models, as for :class:`bge_core.Embedder`.

    Raises:
        ConfigError: an invalid override, or a query format that is not a prefix.
    """
    settings = _embedding_settings(
        model,
        trust_remote_code,
        pooling=pooling,
        query_instruction=query_instruction,
        query_instruction_format=query_instruction_format,
        document_instruction=document_instruction,
        max_length=max_length,
        normalize=normalize,
        cache_dir=cache_dir,
        revision=revision,
        token=token,
    )
    if "Dense" in settings.post_modules:
        raise UnsupportedModelError(
            f"{str(settings.folder)!r} is a sentence-transformers folder with Dense modules after Pooling "
            f"({' -> '.join(settings.post_modules)}); the dense export writes Transformer -> Pooling -> Normalize "
            f"only and would drop them. Load that folder in sentence-transformers as it is."
        )
    transformer = _embedding_transformer(settings)
    modules: list[torch.nn.Module] = [
        transformer,
        Pooling(transformer.get_embedding_dimension(), pooling_mode=_ST_POOLING[settings.pooling]),
    ]
    # bge_core normalizes when asked, and also, for an unregistered folder, when its modules.json says so.
    if settings.normalize or (not settings.registered and "Normalize" in settings.post_modules):
        modules.append(Normalize())
    return SentenceTransformer(modules=modules, prompts=settings.prompts, similarity_fn_name="cosine", device=device)


def build_multi_vector_encoder(
    model: str | Path,
    *,
    query_instruction: str | None = None,
    query_instruction_format: str | None = None,
    document_instruction: str | None = None,
    max_length: int | None = None,
    device: str | None = None,
    trust_remote_code: bool | None = None,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
) -> MultiVectorEncoder:
    """A ``MultiVectorEncoder`` giving BGE-M3's ColBERT vectors, from built-in modules only.

    Modules: Transformer -> Dense (``colbert_linear.pt``: bias, identity activation, on token
    embeddings) -> MultiVectorMask (skips the CLS token for queries and documents) -> Normalize
    (token embeddings); similarity ``meanmaxsim`` (FlagEmbedding's ColBERT score). Loads without
    ``trust_remote_code``.

    The mask works on token ids, so a CLS token typed literally into a text (``"[CLS]"`` for
    BERT, ``"<s>"`` for XLM-R) is dropped as well, where FlagEmbedding drops only the first token.

    Takes the arguments of :func:`build_sentence_transformer` but ``pooling`` and ``normalize``
    (ColBERT vectors are always normalized).

    Raises:
        MissingHeadError: the model has no ``colbert_linear.pt``.
    """
    settings, head = _m3_settings_and_head(
        model,
        "colbert",
        trust_remote_code,
        query_instruction=query_instruction,
        query_instruction_format=query_instruction_format,
        document_instruction=document_instruction,
        max_length=max_length,
        cache_dir=cache_dir,
        revision=revision,
        token=token,
    )
    transformer = _embedding_transformer(settings)
    dense = Dense(
        settings.hidden_size,
        head.out_features,
        bias=head.bias is not None,
        activation_function=torch.nn.Identity(),
        init_weight=head.weight.detach().clone(),
        init_bias=None if head.bias is None else head.bias.detach().clone(),
        module_input_name="token_embeddings",
    )
    mask = MultiVectorMask(
        skiplist_words=[_skipped_first_token(transformer.tokenizer, settings.folder)],
        skiplist_tasks=["query", "document"],
    )
    return MultiVectorEncoder(
        modules=[transformer, dense, mask, Normalize(module_input_name="token_embeddings")],
        prompts=settings.prompts,
        similarity_fn_name="meanmaxsim",
        device=device,
    )


def build_sparse_encoder(
    model: str | Path,
    *,
    query_instruction: str | None = None,
    query_instruction_format: str | None = None,
    document_instruction: str | None = None,
    max_length: int | None = None,
    device: str | None = None,
    trust_remote_code: bool | None = None,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
) -> SparseEncoder:
    """A ``SparseEncoder`` giving BGE-M3's lexical weights, built in code (no ``trust_remote_code``).

    Modules: Transformer -> :class:`M3LexicalWeights` (``sparse_linear.pt``, the class of
    :func:`lexical_weights_class`); similarity dot (FlagEmbedding's lexical matching score).
    Outputs are vocabulary-sized vectors whose non-zero entries are
    ``Embedder(..., precision="fp32").encode(..., sparse=True)``'s ids and weights. The model's own
    ``save`` writes a folder that ``SparseEncoder(folder, trust_remote_code=True)`` loads without
    bge-rag.

    Takes the arguments of :func:`build_multi_vector_encoder`.

    Raises:
        MissingHeadError: the model has no ``sparse_linear.pt``.
    """
    settings, head = _m3_settings_and_head(
        model,
        "sparse",
        trust_remote_code,
        query_instruction=query_instruction,
        query_instruction_format=query_instruction_format,
        document_instruction=document_instruction,
        max_length=max_length,
        cache_dir=cache_dir,
        revision=revision,
        token=token,
    )
    if head.out_features != 1:
        raise ModelLoadError(
            f"{settings.folder / 'sparse_linear.pt'} must be a Linear(hidden, 1) head, "
            f"it has {head.out_features} outputs."
        )
    transformer = _embedding_transformer(settings)
    tokenizer = transformer.tokenizer
    lexical = lexical_weights_class()(
        settings.hidden_size,
        max(len(tokenizer), int(transformer.config.vocab_size)),
        unused_token_ids(tokenizer).tolist(),
    )
    lexical.linear.load_state_dict(head.state_dict())
    return SparseEncoder(
        modules=[transformer, lexical], prompts=settings.prompts, similarity_fn_name="dot", device=device
    )


def build_cross_encoder(
    model: str | Path,
    *,
    activation: Activation = "identity",
    max_length: int | None = None,
    device: str | None = None,
    trust_remote_code: bool | None = None,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
) -> CrossEncoder:
    """A ``CrossEncoder`` for a BGE reranker, with its activation stated explicitly.

    Args:
        model: Hub id or local folder of a cross-encoder reranker (one output logit).
        activation: ``"identity"`` (raw logits, FlagReranker's default) or ``"sigmoid"``
            (0..1, FlagReranker's ``normalize=True``).
        max_length: Tokens per (query, passage) pair, as for :class:`bge_core.Reranker`.
        device: Device of the returned model, as for the other builders.
        trust_remote_code: Allow a model's own code, as for the other builders.
        cache_dir: Hugging Face cache folder for Hub ids, as for the other builders.
        revision: Model revision (branch, tag or commit) on the Hub, as for the other builders.
        token: Hugging Face token for private models, as for the other builders.

    Raises:
        ConfigError: an unknown activation.
        ModelLoadError: the model is not a one-logit sequence-classification checkpoint.
    """
    if activation not in ACTIVATIONS:
        raise ConfigError(f"Invalid activation {activation!r}. Valid activations are: {', '.join(ACTIVATIONS)}.")
    reranker = Reranker(
        model,
        device="cpu",
        precision="fp32",
        max_length=max_length,
        trust_remote_code=trust_remote_code,
        cache_dir=cache_dir,
        revision=revision,
        token=token,
    )
    folder, length = reranker.folder, reranker.max_length
    trust = _trusted(reranker.spec.trust_remote_code, trust_remote_code)
    del reranker  # free its weights before sentence-transformers loads its own copy
    transformer = _transformer(folder, length, trust, task="sequence-classification")
    activation_fn = ACTIVATIONS[activation]()
    # sentence-transformers 4 and 5 read the activation from config.json; 6 from config_sentence_transformers.json.
    transformer.model.config.sentence_transformers = {"activation_fn": _fullname(activation_fn)}
    return CrossEncoder(modules=[transformer], activation_fn=activation_fn, device=device)


def _fullname(obj: Any) -> str:
    cls = obj if inspect.isclass(obj) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


_BUILDERS = {
    "dense": build_sentence_transformer,
    "sparse": build_sparse_encoder,
    "colbert": build_multi_vector_encoder,
    "reranker": build_cross_encoder,
}


def _check_out_dir(out_dir: Path, source: Path, overwrite: bool) -> None:
    """Refuse, before any work, an ``out_dir`` that export must not write into."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{str(out_dir)!r} is a file; pass a folder to export into.")
    if source.exists():
        src, out = source.resolve(), out_dir.resolve()
        if out == src or out in src.parents:
            raise ConfigError(f"Cannot export into {str(out_dir)!r}: it holds the source model; choose another folder.")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"{str(out_dir)!r} is not empty; choose an empty folder or pass overwrite=True (--overwrite)."
            )
        if not (out_dir / "modules.json").is_file():
            raise ConfigError(
                f"{str(out_dir)!r} is not empty and is not a sentence-transformers folder; refusing to replace it."
            )


def _empty_out_dir(out_dir: Path) -> None:
    if out_dir.is_dir() and any(out_dir.iterdir()):
        shutil.rmtree(out_dir)  # an earlier export (checked by _check_out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def _check_sparse_folder_is_portable(out_dir: Path) -> None:
    """The saved folder names the module by its file and carries the file (see lexical_weights_class)."""
    types = [entry.get("type") for entry in _read_json(out_dir / "modules.json")]
    if types[1:] != [PORTABLE_SPARSE_TYPE] or not (out_dir / Path(m3_lexical_weights.__file__).name).is_file():
        raise ModelLoadError(f"{str(out_dir)!r} was saved with modules {types} and would not load without bge-rag.")


def _write_dense_folder_for_all_versions(out_dir: Path, built: SentenceTransformer) -> None:
    """Rewrite a dense folder's module types and configs for every sentence-transformers release.

    The format written is the one every release from 2.x to 6.x loads (6.x maps the old types to
    its modules and converts the keys).
    """
    modules_path = out_dir / "modules.json"
    modules = _read_json(modules_path)
    for entry in modules:
        short = str(entry["type"]).rsplit(".", 1)[-1]
        if short not in _LEGACY_DENSE_TYPES:  # pragma: no cover - the dense builder adds no other module
            raise ModelLoadError(f"No sentence-transformers 5.x name for the module {entry['type']!r}.")
        entry["type"] = _LEGACY_DENSE_TYPES[short]
    _write_json(modules_path, modules)
    config = {"max_seq_length": built.max_seq_length, "do_lower_case": bool(built[0].do_lower_case)}
    _write_json(out_dir / "sentence_bert_config.json", config)
    pooling = next(module for module in built if isinstance(module, Pooling))
    mode = pooling.pooling_mode
    pooling_config = {
        "word_embedding_dimension": pooling.get_embedding_dimension(),
        **{key: mode == name for name, key in _LEGACY_POOLING_KEYS.items()},
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "include_prompt": bool(pooling.include_prompt),
    }
    pooling_dir = out_dir / next(entry["path"] for entry in modules if entry["type"].endswith(".Pooling"))
    _write_json(pooling_dir / "config.json", pooling_config)


def save_folder(
    built: SentenceTransformer | SparseEncoder | MultiVectorEncoder | CrossEncoder, out_dir: str | Path
) -> Path:
    """Write a model built here (or trained from one) as export writes it, without a model card.

    Dense folders get the module types and configs every sentence-transformers release from 2.x
    loads; sparse folders carry the lexical module's file. Files of the folder not written by the
    model (checkpoints of a training run, a README) are left alone.

    Args:
        built: A model from one of the ``build_*`` functions, possibly trained since.
        out_dir: The folder (created when missing).

    Returns:
        The folder.

    Raises:
        ModelLoadError: a sparse folder would not load without bge-rag.
    """
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    built.save(str(out), create_model_card=False)
    if isinstance(built, SparseEncoder):
        _check_sparse_folder_is_portable(out)
    elif isinstance(built, SentenceTransformer):
        _write_dense_folder_for_all_versions(out, built)
    return out


_KIND_OPTIONS: dict[str, frozenset[str]] = {
    "dense": frozenset(
        {"pooling", "query_instruction", "query_instruction_format", "document_instruction", "max_length", "normalize"}
    ),
    "sparse": frozenset({"query_instruction", "query_instruction_format", "document_instruction", "max_length"}),
    "colbert": frozenset({"query_instruction", "query_instruction_format", "document_instruction", "max_length"}),
    "reranker": frozenset({"activation", "max_length"}),
}


def export(
    model: str | Path,
    out_dir: str | Path,
    kind: Kind = "dense",
    *,
    overwrite: bool = False,
    pooling: str | None = None,
    query_instruction: str | None = None,
    query_instruction_format: str | None = None,
    document_instruction: str | None = None,
    max_length: int | None = None,
    normalize: bool | None = None,
    activation: Activation | None = None,
    trust_remote_code: bool | None = None,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
) -> Path:
    """Save a BGE checkpoint as a sentence-transformers folder of the given kind.

    ======== ======================= =====================================================
    kind     load it with            gives
    ======== ======================= =====================================================
    dense    ``SentenceTransformer`` ``Embedder.encode_queries`` / ``encode_documents``
    sparse   ``SparseEncoder``       BGE-M3 lexical weights (``trust_remote_code=True``, or
                                     :func:`load_sparse_encoder` without the flag)
    colbert  ``MultiVectorEncoder``  BGE-M3 ColBERT vectors, ``meanmaxsim`` scores
    reranker ``CrossEncoder``        ``Reranker.score`` (raw logits unless ``activation="sigmoid"``)
    ======== ======================= =====================================================

    The outputs equal bge_core's at ``precision="fp32"`` (sentence-transformers loads fp32 on CPU).
    Dense and reranker folders load in sentence-transformers 5.x and 6.x, sparse and ColBERT
    folders in 6.x; none needs bge-rag to load.

    Args:
        model: Hub id or local folder (local folders never touch the network).
        out_dir: The folder to write; it must be empty or absent (see ``overwrite``).
        kind: ``"dense"``, ``"sparse"``, ``"colbert"`` or ``"reranker"``.
        overwrite: Replace ``out_dir`` if it is an earlier sentence-transformers folder.
        pooling: Dense only: override as for :class:`bge_core.Embedder` (``None``: the registry's).
        query_instruction: Override as for :class:`bge_core.Embedder` (``None``: the registry's).
            Not for rerankers.
        query_instruction_format: Override as for :class:`bge_core.Embedder` (``None``: the
            registry's). Not for rerankers.
        document_instruction: Override as for :class:`bge_core.Embedder` (``None``: the
            registry's). Not for rerankers.
        max_length: Override as for :class:`bge_core.Embedder` or :class:`bge_core.Reranker`
            (``None``: the registry's).
        normalize: Dense only: override as for :class:`bge_core.Embedder` (``None``: the
            builder's default).
        activation: Reranker only: ``"identity"`` (default) or ``"sigmoid"``.
        trust_remote_code: As for :class:`bge_core.Embedder`.
        cache_dir: As for :class:`bge_core.Embedder`.
        revision: As for :class:`bge_core.Embedder`.
        token: As for :class:`bge_core.Embedder`.

    Returns:
        The folder written.

    Raises:
        ConfigError: an unknown kind, an option that does not apply to the kind, or an
            unusable ``out_dir``.
        MissingHeadError: sparse / colbert from a model without that BGE-M3 head file.
    """
    if kind not in _BUILDERS:
        raise ConfigError(f"Invalid kind {kind!r}. Valid kinds are: {', '.join(KINDS)}.")
    given = {
        "pooling": pooling,
        "query_instruction": query_instruction,
        "query_instruction_format": query_instruction_format,
        "document_instruction": document_instruction,
        "max_length": max_length,
        "normalize": normalize,
        "activation": activation,
    }
    options = {name: value for name, value in given.items() if value is not None}
    wrong = sorted(set(options) - _KIND_OPTIONS[kind])
    if wrong:
        valid = ", ".join(sorted(_KIND_OPTIONS[kind]))
        raise ConfigError(f"{', '.join(wrong)} does not apply to kind={kind!r}; its options are: {valid}.")
    out = Path(out_dir).expanduser()
    _check_out_dir(out, Path(model).expanduser(), overwrite)
    with quiet_transformers():  # no weight-loading or shard-writing bars: export says what it did itself
        built = _BUILDERS[kind](
            model,
            device="cpu",
            trust_remote_code=trust_remote_code,
            cache_dir=cache_dir,
            revision=revision,
            token=token,
            **options,
        )
        _empty_out_dir(out)
        save_folder(built, out)
    (out / "README.md").write_text(
        model_card(
            kind, model, out, built, resolve_model_dir(model, cache_dir=cache_dir, revision=revision, token=token)
        ),
        encoding="utf-8",
    )
    logger.info("Exported %s as a %s folder to %s", model, type(built).__name__, out)
    return out


def load_sparse_encoder(
    model: str | Path,
    *,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
) -> SparseEncoder:
    """Load a sparse folder written by :func:`export` without ``trust_remote_code``.

    The folder's ``modules.json`` must list exactly a Transformer and an :class:`M3LexicalWeights`
    module; both are built from bge-rag's and sentence-transformers' own classes, so no code is
    imported from the folder.

    Raises:
        ModelLoadError: the folder is not a sparse export of this package.
    """
    folder = resolve_model_dir(model, cache_dir=cache_dir, revision=revision, token=token)
    try:
        modules = _read_json(folder / "modules.json")
        config = _read_json(folder / "config_sentence_transformers.json")
        types = [entry["type"] for entry in modules]
        paths = [entry["path"] for entry in modules]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{str(folder)!r} is not a sentence-transformers folder: {exc}") from exc
    if len(types) != 2 or types[0] != _TRANSFORMER_TYPE or types[1] not in (PORTABLE_SPARSE_TYPE, _PACKAGE_SPARSE_TYPE):
        raise ModelLoadError(
            f"{str(folder)!r} is not a BGE-M3 sparse export (its modules are {types}); "
            f"write one with sentence_transformers_bge.export(model, out_dir, kind='sparse')."
        )
    transformer = Transformer.load(str(folder), subfolder=paths[0])
    lexical = lexical_weights_class().load(str(folder), subfolder=paths[1])
    prompts: Mapping[str, str] = config.get("prompts") or {}
    return SparseEncoder(
        modules=[transformer, lexical],
        prompts=dict(prompts),
        default_prompt_name=config.get("default_prompt_name"),
        similarity_fn_name=config.get("similarity_fn_name"),
        device=device,
    )


__all__ = [
    "ACTIVATIONS",
    "KINDS",
    "PORTABLE_SPARSE_TYPE",
    "build_cross_encoder",
    "build_multi_vector_encoder",
    "build_sentence_transformer",
    "build_sparse_encoder",
    "export",
    "lexical_weights_class",
    "load_sparse_encoder",
]
