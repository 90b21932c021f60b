"""Finding a model (local folder or Hugging Face Hub id) and loading it once.

A model is resolved to a local folder first: an existing folder is used as it is; anything else
is treated as a hub id and fetched (or found in the cache) with ``huggingface_hub``. Weights are
then loaded straight into the chosen dtype and device. Loaded backbones are shared: two
``Embedder`` objects with the same folder, task, device, dtype and options use one model in
memory and one lock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from .checks import check_positive, transformers_version
from .errors import ConfigError, ModelLoadError, ModelNotFoundError, UnsupportedModelError
from .prepack import prepack_encoder
from .registry import ModelSpec, lookup, resolve_spec

logger = logging.getLogger(__name__)

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# What a hub snapshot needs: configs, tokenizer files, safetensors weights and the M3 heads.
# ONNX/OpenVINO exports and other frameworks' weights are left on the hub.
_ALLOW = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.safetensors", "sparse_linear.pt", "colbert_linear.pt"]
_IGNORE = ["onnx/*", "openvino/*", "imgs/*", "*.onnx", "*.onnx_data", "*.gguf", "*.h5", "*.msgpack", "*.ot"]
_BIN_WEIGHTS = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin"]
# Missing backbone keys that do not change our outputs (BERT's pooler feeds no BGE output).
_IGNORABLE_MISSING = ("pooler.",)

Task = Literal["embedding", "reranking"]


def has_weights(folder: Path) -> bool:
    """Whether a folder holds transformers weights in one of the usual files."""
    return any((folder / name).is_file() for name in WEIGHT_FILES)


def _offline_message(model: str) -> str:
    return (
        f"Cannot load {model!r}: it is not a local folder, and the Hugging Face Hub could not be reached "
        f"(no network, or HF_HUB_OFFLINE=1) nor is the model in the local cache; download it once with "
        f"network access or pass the path of a local model folder."
    )


def resolve_model_dir(
    model: str | Path,
    *,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    trust_remote_code: bool = False,
) -> Path:
    """The local folder of ``model``: the folder itself, or a hub snapshot (downloaded if needed).

    Raises:
        ModelNotFoundError: not a folder, and not obtainable from the hub or its cache.
        ModelLoadError: the path is a file, or the folder holds no model weights.
    """
    if not isinstance(model, (str, Path)) or not str(model).strip():
        raise ModelNotFoundError(f"model must be a hub id or a folder path, got {model!r}")
    path = Path(model).expanduser()
    if path.is_dir():
        folder = path
    elif path.exists():
        raise ModelLoadError(f"{str(model)!r} is a file; pass the folder that contains the model.")
    elif _is_path_like(str(model)):
        raise ModelNotFoundError(
            f"There is no folder at {str(model)!r}; check the path (hub ids look like 'BAAI/bge-m3')."
        )
    else:
        folder = _download(
            str(model), cache_dir=cache_dir, revision=revision, token=token, trust_remote_code=trust_remote_code
        )
    if not has_weights(folder):
        raise ModelLoadError(f"{str(folder)!r} has no model weights (expected one of {', '.join(WEIGHT_FILES)}).")
    return folder


def _is_path_like(model: str) -> bool:
    """Whether ``model`` can only be a local path, not a hub id.

    That is a name that is absolute, home- or dot-relative, or has a backslash or more than one
    slash (hub ids are ``name`` or ``org/name``).
    """
    return model.startswith(("/", "~", "./", "../", ".\\")) or "\\" in model or model.count("/") > 1


def _download(model: str, **kwargs: Any) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    trust_remote_code = kwargs.pop("trust_remote_code")
    allow = _ALLOW + (["*.py"] if trust_remote_code else [])
    try:
        folder = Path(snapshot_download(model, allow_patterns=allow, ignore_patterns=_IGNORE, **kwargs))
        if not has_weights(folder):  # older repositories ship only PyTorch pickles
            folder = Path(snapshot_download(model, allow_patterns=_BIN_WEIGHTS, **kwargs))
    except GatedRepoError as exc:
        raise ModelNotFoundError(
            f"{model!r} is a gated repository: accept its terms on the hub and pass token=, or log in."
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelNotFoundError(
            f"{model!r} is neither a local folder nor a model on the Hugging Face Hub; check the name or path."
        ) from exc
    except RevisionNotFoundError as exc:
        raise ModelNotFoundError(f"{model!r} has no revision {kwargs.get('revision')!r} on the hub.") from exc
    except LocalEntryNotFoundError as exc:
        raise ModelNotFoundError(_offline_message(model)) from exc
    except HfHubHTTPError as exc:
        raise ModelNotFoundError(f"Cannot download {model!r} from the Hugging Face Hub: {exc}") from exc
    except (OSError, ValueError) as exc:  # offline mode, malformed ids, connection failures
        if "offline" in str(exc).lower() or "connect" in str(exc).lower():
            raise ModelNotFoundError(_offline_message(model)) from exc
        raise ModelNotFoundError(f"Cannot resolve model {model!r}: {exc}") from exc
    return folder


def max_positions(config: Any, tokenizer: Any) -> int | None:
    """The longest input (in tokens) the model's position embeddings allow (the hard limit).

    Falls back to the tokenizer's ``model_max_length`` for models without absolute positions.
    """
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        if getattr(config, "model_type", "") in {"xlm-roberta", "roberta", "camembert"}:
            positions -= (getattr(config, "pad_token_id", 1) or 1) + 1  # positions start after padding_idx
        return positions
    return tokenizer_limit(tokenizer)


def tokenizer_limit(tokenizer: Any) -> int | None:
    """The tokenizer's ``model_max_length`` when it is a real limit (not transformers' 1e30)."""
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else None


def resolve_max_length(requested: int | None, spec: ModelSpec, backbone: Backbone, limit: int | None, name: str) -> int:
    """The truncation length: the caller's, or the default.

    The caller's is checked against the model's hard limit; the default is the spec's (512, or a
    sentence-transformers folder's ``max_seq_length``), capped by the tokenizer's
    ``model_max_length`` and the hard limit.
    """
    if requested is None:
        candidates = (spec.default_max_length, tokenizer_limit(backbone.tokenizer), limit)
        return min(c for c in candidates if c)
    value = check_positive("max_length", requested)
    if value < 2:
        raise ConfigError(f"max_length must leave room for the special tokens (at least 2), got {value}")
    if limit is not None and value > limit:
        raise ConfigError(f"max_length={value} exceeds what {name} accepts ({limit} tokens).")
    return value


def _dtype_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    return {"dtype": dtype} if transformers_version() >= (4, 56) else {"torch_dtype": dtype}


# transformers loggers whose load-time output bge_core replaces with its own errors: the weight
# loading report ("newly initialized" / "MISSING" / "UNEXPECTED" tables) of transformers 4 and 5,
# and transformers 5's tensor-parallel notice ("The following layers were not sharded"), which
# concerns multi-device sharding that bge_core does not use.
_QUIET_LOGGERS = (
    "transformers.modeling_utils",
    "transformers.utils.loading_report",
    "transformers.distributed.tensor_parallel",
)
_QUIET_LOCK = threading.RLock()


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and weight-loading reports during one of our calls.

    The previous progress-bar setting and logger levels are restored on exit, so the user's
    own transformers calls are unaffected. Missing weights are still detected (from
    ``output_loading_info``) and raised as :class:`~bge_core.errors.ModelLoadError`.
    """
    from transformers.utils import logging as hf_logging

    with _QUIET_LOCK:
        bars = hf_logging.is_progress_bar_enabled()
        loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
        levels = [lg.level for lg in loggers]
        if bars:
            hf_logging.disable_progress_bar()
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)
            if bars:
                hf_logging.enable_progress_bar()


def _load(folder: Path, task: Task, dtype: torch.dtype, trust_remote_code: bool) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    auto = AutoModel if task == "embedding" else AutoModelForSequenceClassification
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
            model, info = auto.from_pretrained(
                str(folder), trust_remote_code=trust_remote_code, output_loading_info=True, **_dtype_kwargs(dtype)
            )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"Cannot load the model in {str(folder)!r}: {exc}") from exc
    if hasattr(model, "set_domain"):
        raise UnsupportedModelError(
            f"{str(folder)!r} is a pseudo-MoE checkpoint (its model code routes by domain, as FlagEmbedding's "
            f"FlagPseudoMoEModel runs it); bge_core does not run pseudo-MoE models. Use FlagPseudoMoEModel."
        )
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith(_IGNORABLE_MISSING))
    mismatched = sorted(str(k) for k in info.get("mismatched_keys", ()))
    if missing or mismatched:
        what = "a sequence-classification (reranker) checkpoint" if task == "reranking" else "a complete checkpoint"
        raise ModelLoadError(
            f"{str(folder)!r} is not {what}: weights missing from the files would be randomly initialized "
            f"({', '.join((missing + mismatched)[:5])}{', ...' if len(missing) + len(mismatched) > 5 else ''})."
        )
    return model, tokenizer


def lowercase_tokenizer(tokenizer: Any, folder: Path) -> None:
    """Make ``tokenizer`` lowercase its input exactly as sentence-transformers 6 does for ``do_lower_case``.

    A ``Lowercase`` normalizer is put before the tokenizer's own, unless its normalizer already
    has one (a ``BertNormalizer``'s lowercasing does not count, as there). The normalizer keeps
    offsets into the original text, and copies of the tokenizer (the server's) lowercase too.

    Raises:
        UnsupportedModelError: a slow (Python) tokenizer, which has no normalizer to extend.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise UnsupportedModelError(
            f"{str(folder)!r} asks for lowercased inputs (sentence_bert_config.json: do_lower_case) and its "
            f"tokenizer is a slow (Python) one; bge_core lowercases only through a fast tokenizer's normalizer. "
            f"Save the folder with a fast tokenizer (tokenizer.json)."
        )
    from tokenizers import normalizers

    backend = tokenizer.backend_tokenizer
    current = backend.normalizer
    steps = (
        # tokenizers' stub gives Sequence no __iter__; list() iterates it through __getitem__.
        list(current)  # type: ignore[call-overload]
        if isinstance(current, normalizers.Sequence)
        else []
        if current is None
        else [current]
    )
    if any(isinstance(step, normalizers.Lowercase) for step in steps):
        return
    backend.normalizer = normalizers.Sequence([normalizers.Lowercase(), *steps])


@dataclass(eq=False)
class Backbone:
    """A loaded transformer with its tokenizer, device, dtype and the lock that guards both."""

    folder: Path
    task: Task
    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    lock: threading.RLock = field(default_factory=threading.RLock)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Any:
        """The model's transformers config."""
        return self.model.config

    @property
    def hidden_size(self) -> int:
        """The width of the model's hidden states."""
        return int(self.model.config.hidden_size)


_SHARED: weakref.WeakValueDictionary[tuple, Backbone] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def load_backbone(
    folder: Path,
    *,
    task: Task,
    device: torch.device,
    dtype: torch.dtype,
    trust_remote_code: bool = False,
    lowercase: bool = False,
) -> Backbone:
    """Load (or reuse) the transformer in ``folder`` for ``task`` on ``device`` in ``dtype``.

    ``lowercase``: the tokenizer lowercases its input (see :func:`lowercase_tokenizer`).
    A backbone stays shared while any object holds it; it is freed with its last user.
    """
    key = (str(folder.resolve()), task, str(device), str(dtype), bool(trust_remote_code), bool(lowercase))
    with _SHARED_LOCK:
        backbone = _SHARED.get(key)
        if backbone is None:
            model, tokenizer = _load(folder, task, dtype, trust_remote_code)
            model.to(device)
            model.eval()
            model.requires_grad_(False)
            prepack_encoder(model, device, dtype)
            if tokenizer.pad_token_id is None:
                # LLM tokenizers without a pad token: padded positions are masked, any id works.
                tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
            if lowercase:
                lowercase_tokenizer(tokenizer, folder)
            backbone = Backbone(folder, task, model, tokenizer, device, dtype)
            _SHARED[key] = backbone
        return backbone


def locate(
    model: str | Path,
    task: Task,
    trust_remote_code: bool | None,
    cache_dir: str | Path | None,
    revision: str | None,
    token: str | bool | None,
) -> tuple[Path, ModelSpec, bool]:
    """Resolve ``model`` to its folder and registry spec, checking that it fits ``task``.

    Returns:
        The local folder, the spec, and whether the model's own code may run.

    Raises:
        ConfigError: an embedding model given as a reranker or the other way round.
        UnsupportedModelError: a registered model this version cannot run (LLM rerankers).
    """
    known = lookup(model)
    trust = bool(known.trust_remote_code if known is not None and trust_remote_code is None else trust_remote_code)
    if known is not None:
        _check_task(known, model, task)
    folder = resolve_model_dir(model, cache_dir=cache_dir, revision=revision, token=token, trust_remote_code=trust)
    spec = resolve_spec(model, folder, task)
    _check_task(spec, model, task)
    if trust_remote_code is None:
        trust = spec.trust_remote_code
    return folder, spec, trust


def open_model(
    model: str | Path,
    task: Task,
    *,
    device: torch.device,
    dtype: torch.dtype,
    trust_remote_code: bool | None,
    cache_dir: str | Path | None,
    revision: str | None,
    token: str | bool | None,
) -> tuple[ModelSpec, Backbone, int | None]:
    """Locate, check and load (or reuse) a model for ``task``.

    Returns:
        The model's spec, its loaded backbone, and the longest input it accepts in tokens.
    """
    folder, spec, trust = locate(model, task, trust_remote_code, cache_dir, revision, token)
    backbone = load_backbone(
        folder, task=task, device=device, dtype=dtype, trust_remote_code=trust, lowercase=spec.lowercase
    )
    return spec, backbone, spec.max_length or max_positions(backbone.config, backbone.tokenizer)


def _check_task(spec: ModelSpec, model: str | Path, task: Task) -> None:
    if spec.task != task:
        use = "bge_core.Reranker" if spec.task == "reranking" else "bge_core.Embedder"
        raise ConfigError(
            f"{str(model)!r} is {'a reranker' if spec.task == 'reranking' else 'an embedding model'}; "
            f"load it with {use}."
        )
    # Decoder (LLM) rerankers: bge_core.rerank tells them apart and runs them (one scorer per kind).


__all__ = [
    "WEIGHT_FILES",
    "Backbone",
    "has_weights",
    "load_backbone",
    "locate",
    "lowercase_tokenizer",
    "max_positions",
    "open_model",
    "quiet_transformers",
    "resolve_max_length",
    "resolve_model_dir",
    "tokenizer_limit",
]
