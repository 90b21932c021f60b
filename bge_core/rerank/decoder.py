r"""What the LLM (decoder-only) rerankers share, run as FlagEmbedding's FlagLLMReranker family runs them.

Three kinds, told apart by the folder's ``config.json`` (:func:`detect_kind`), one module each:

- ``"llm"`` (:mod:`~bge_core.rerank.llm`, ``FlagLLMReranker``, bge-reranker-v2-gemma): a causal LM;
  the score is the logit of the ``"Yes"`` token after the prompt, at the pair's last token. Runs with
  transformers' own model classes (Gemma, Gemma 2, Qwen2: the types parity-tested) on transformers
  4.45+ and 5.
- ``"layerwise"`` (:mod:`~bge_core.rerank.layerwise`, ``LayerWiseFlagLLMReranker``,
  bge-reranker-v2-minicpm-layerwise): MiniCPM with one score head per layer from ``start_layer``;
  ``cutoff_layers`` picks the layers.
- ``"lightweight"`` (:mod:`~bge_core.rerank.lightweight`, ``LightWeightFlagLLMReranker``,
  bge-reranker-v2.5-gemma2-lightweight): a Gemma 2 that compresses passage tokens
  (``compress_ratio``, ``compress_layers``) and scores at ``cutoff_layers``.

The layer-wise and lightweight checkpoints ship their own modelling code (``auto_map`` in
``config.json``); bge_core runs that code from the model folder (``trust_remote_code``), never
FlagEmbedding's package. That code imports transformers-4 internals, so those two kinds need
transformers < 5 (the lightweight kind: 4.46 exactly, see :mod:`~bge_core.rerank.lightweight`);
on other versions loading them raises :class:`UnsupportedModelError`.

Every pair is built as FlagEmbedding builds it: ``"A: " + query`` tokenized without special
tokens and cut to ``query_max_length``; ``"B: " + passage`` cut to ``max_length``; then
``[bos] + query``, ``"\n" + passage`` (the passage's end removed until the two fit
``max_length + len("\n") + len(prompt)``, the query never cut there), ``"\n" + prompt``. Rows are
padded on the tokenizer's padding side (the lightweight kind: always the right, as
LightWeightFlagLLMReranker sets it), to a multiple of 8, as FlagEmbedding's collator does.
"""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from .. import batching
from ..checks import transformers_version
from ..errors import ConfigError, ModelLoadError, UnsupportedModelError
from ..loading import Backbone
from .base import PairScorer, PreparedPairs

logger = logging.getLogger(__name__)

LLMKind = Literal["llm", "layerwise", "lightweight"]

#: FlagEmbedding's default prompts (``FlagLLMReranker`` / ``LayerWise...``, and ``LightWeight...``).
LLM_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the query "
    "by providing a prediction of either 'Yes' or 'No'."
)
LIGHTWEIGHT_PROMPT = "Predict whether passage B contains an answer to query A."
QUERY_PREFIX = "A: "
PASSAGE_PREFIX = "B: "
SEPARATOR = "\n"
PAD_MULTIPLE = 8

#: Registered model names and their kind.
REGISTERED_KINDS: dict[str, LLMKind] = {
    "bge-reranker-v2-gemma": "llm",
    "bge-reranker-v2-minicpm-layerwise": "layerwise",
    "bge-reranker-v2.5-gemma2-lightweight": "lightweight",
}
#: transformers model types whose causal-LM head bge_core applies itself (``"llm"`` kind):
#: ``lm_head`` on the final (normed) hidden state, plus Gemma 2's final logit soft-capping.
NATIVE_CAUSAL_TYPES = ("gemma", "gemma2", "qwen2")
_LAYERWISE_MARK = "LayerWiseMiniCPM"
_LIGHTWEIGHT_MARK = "CostWiseGemma"


def _config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _is_decoder(config: dict[str, Any]) -> bool:
    archs = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    auto = " ".join(str(v) for v in (config.get("auto_map") or {}).values())
    return (
        config.get("is_decoder") is True
        or any(a.endswith("ForCausalLM") for a in archs)
        or config.get("model_type") in NATIVE_CAUSAL_TYPES
        or _LAYERWISE_MARK in auto
        or _LIGHTWEIGHT_MARK in auto
    )


def detect_kind(folder: Path, name: str | None = None) -> LLMKind | None:
    """The LLM reranker kind of a model folder, or ``None`` for a cross-encoder.

    Raises:
        UnsupportedModelError: a decoder-only folder that bge_core cannot run exactly.
    """
    config = _config(folder)
    registered = REGISTERED_KINDS.get(name or "")
    archs = " ".join(str(a) for a in config.get("architectures") or [])
    auto = " ".join(str(v) for v in (config.get("auto_map") or {}).values())
    if _LAYERWISE_MARK in archs or _LAYERWISE_MARK in auto:
        return "layerwise"
    if _LIGHTWEIGHT_MARK in archs or _LIGHTWEIGHT_MARK in auto or config.get("model_type") == "cost_wise_gemma":
        return "lightweight"
    if registered in ("layerwise", "lightweight"):
        raise UnsupportedModelError(
            f"{str(folder)!r} is registered as {name} but its config.json names neither "
            f"{_LAYERWISE_MARK} nor {_LIGHTWEIGHT_MARK} modelling code; bge_core cannot run it exactly."
        )
    if not _is_decoder(config) and registered is None:
        return None
    model_type = config.get("model_type")
    if model_type in NATIVE_CAUSAL_TYPES and not config.get("auto_map"):
        return "llm"
    raise UnsupportedModelError(
        f"{str(folder)!r} is a decoder-only (LLM) model of type {model_type!r}"
        f"{' with its own modelling code (auto_map)' if config.get('auto_map') else ''}; bge_core runs LLM "
        f"rerankers of the types {', '.join(NATIVE_CAUSAL_TYPES)} (FlagLLMReranker's 'Yes'-logit scoring), "
        f"bge-reranker-v2-minicpm-layerwise and bge-reranker-v2.5-gemma2-lightweight, and refuses others "
        f"rather than guess their scoring. Use FlagEmbedding's FlagLLMReranker for this one."
    )


def check_remote_code(folder: Path, kind: str, trust_remote_code: bool) -> None:
    """Refuse to run a folder's own modelling code unless trusted and runnable here.

    Raises:
        ConfigError: ``trust_remote_code`` is off.
        UnsupportedModelError: the code (transformers-4 only) cannot run on this transformers version.
    """
    if not trust_remote_code:
        raise ConfigError(
            f"{str(folder)!r} is a {kind} LLM reranker whose scoring runs the modelling code shipped in the "
            f"model folder (config.json auto_map); pass trust_remote_code=True to allow it."
        )
    if transformers_version() >= (5, 0):
        import transformers

        # The lightweight kind's CostWiseGemma code runs on 4.46 only (see rerank/lightweight.py).
        needs, install = (
            ("4.46", "'transformers==4.46.*'")
            if kind == "lightweight"
            else ("4.x", "'transformers>=4.45,<5' (tested on 4.57.6)")
        )
        raise UnsupportedModelError(
            f"The {kind} LLM reranker's own modelling code (as FlagEmbedding 1.4.2 ships it) needs transformers "
            f"{needs}; this is transformers {transformers.__version__}. Install {install} to run {str(folder)!r}."
        )


def load_llm(folder: Path, *, dtype: torch.dtype, remote_code: bool) -> tuple[Any, Any]:
    """Load the tokenizer and causal LM of an LLM reranker folder.

    Args:
        folder: The model folder.
        dtype: The weights' dtype.
        remote_code: Run the folder's own modelling code (checked by :func:`check_remote_code`).

    Raises:
        UnsupportedModelError: the folder's code cannot run on this transformers version.
        ModelLoadError: the files are incomplete (weights would be randomly initialized).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..loading import _dtype_kwargs, quiet_transformers

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=remote_code)
            loaded: Any = AutoModelForCausalLM.from_pretrained(
                str(folder), trust_remote_code=remote_code, output_loading_info=True, **_dtype_kwargs(dtype)
            )
            model, info = loaded
    except ImportError as exc:
        raise UnsupportedModelError(
            f"The modelling code of {str(folder)!r} does not import on this transformers version: {exc}"
        ) from exc
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"Cannot load the LLM reranker in {str(folder)!r}: {exc}") from exc
    missing = sorted(str(k) for k in (*info.get("missing_keys", ()), *info.get("mismatched_keys", ())))
    missing = [k for k in missing if not k.endswith("rotary_emb.inv_freq")]
    if missing:
        raise ModelLoadError(
            f"{str(folder)!r} is not a complete LLM reranker checkpoint: weights missing from the files would be "
            f"randomly initialized ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})."
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return model, tokenizer


@dataclass(frozen=True)
class LLMPairs:
    """Model input ids of (query, passage) pairs, and what the lightweight model needs."""

    input_ids: list[list[int]]
    query_lengths: list[int]
    prompt_length: int
    truncated: int


class LLMPairEncoder:
    """Builds FlagEmbedding's LLM-reranker prompt ids for (query, passage) pairs.

    Args:
        tokenizer: The model's Hugging Face tokenizer (a fast one; its settings are not touched).
        max_length: Tokens of the passage at most.
        query_max_length: Tokens of the query at most.
        prompt: The instruction after the pair.
        bos: The ids that start every row (the kind decides: see :meth:`DecoderScorer.bos_ids`).
    """

    def __init__(self, tokenizer: Any, max_length: int, query_max_length: int, prompt: str, bos: list[int]) -> None:
        backend = getattr(tokenizer, "_tokenizer", None)
        if backend is None:
            raise ModelLoadError("LLM reranking needs a fast (Rust) tokenizer, i.e. a tokenizer.json in the folder.")
        from tokenizers import Tokenizer

        self._rust = Tokenizer.from_str(backend.to_str())
        self._rust.no_padding()
        self._rust.no_truncation()
        self.max_length = max_length
        self.query_max_length = query_max_length
        self.prompt = prompt
        self.cut_left = getattr(tokenizer, "truncation_side", "right") == "left"
        self.prompt_ids = self.ids(self.prompt)
        self.sep_ids = self.ids(SEPARATOR)
        self.bos = bos

    def ids(self, text: str) -> list[int]:
        """The token ids of ``text``, without special tokens."""
        return list(self._rust.encode(text, add_special_tokens=False).ids)

    def _cut(self, ids: list[int], n: int) -> list[int]:
        return ids[-n:] if self.cut_left else ids[:n]

    def encode(self, pairs: Sequence[tuple[str, str]]) -> LLMPairs:
        """The rows of ``pairs``, cut as FlagEmbedding cuts them."""
        queries = self._rust.encode_batch([QUERY_PREFIX + q for q, _ in pairs], add_special_tokens=False)
        passages = self._rust.encode_batch([PASSAGE_PREFIX + p for _, p in pairs], add_special_tokens=False)
        budget = self.max_length + len(self.sep_ids) + len(self.prompt_ids)
        rows: list[list[int]] = []
        query_lengths: list[int] = []
        truncated = 0
        for q_enc, p_enc in zip(queries, passages):
            q, p = list(q_enc.ids), list(p_enc.ids)
            cut = len(q) > self.query_max_length or len(p) > self.max_length
            first = self.bos + (self._cut(q, self.query_max_length) if len(q) > self.query_max_length else q)
            second = self.sep_ids + (self._cut(p, self.max_length) if len(p) > self.max_length else p)
            excess = len(first) + len(second) - budget
            # FlagEmbedding's prepare_for_model(truncation="only_second"): cut the passage's end;
            # a passage too short to absorb the excess leaves the pair as it is.
            if 0 < excess < len(second):
                second = second[excess:] if self.cut_left else second[:-excess]
                cut = True
            truncated += cut
            rows.append(first + second + self.sep_ids + self.prompt_ids)
            query_lengths.append(len(first) + len(self.sep_ids))
        return LLMPairs(rows, query_lengths, len(self.sep_ids) + len(self.prompt_ids), truncated)


def check_layers(name: str, layers: int | Sequence[int] | None) -> list[int] | None:
    """Validate ``cutoff_layers`` / ``compress_layers``: an int, a non-empty list of ints, or None."""
    if layers is None:
        return None
    if isinstance(layers, bool):
        raise ConfigError(f"{name} must be an int or a list of ints, got {layers!r}")
    if isinstance(layers, (int, np.integer)):
        return [int(layers)]
    if not isinstance(layers, Sequence) or isinstance(layers, str) or not layers:
        raise ConfigError(f"{name} must be an int or a non-empty list of ints, got {layers!r}")
    out = []
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or layer < 0:
            raise ConfigError(f"{name} must hold non-negative ints, got {layer!r}")
        out.append(int(layer))
    return out


class DecoderScorer(PairScorer):
    """An LLM reranker: FlagEmbedding's prompt rows, padded as its collator pads them, one kind's forward.

    Subclasses give the kind's :meth:`_forward` (and, where they differ, the default prompt, the
    padding side, the bos rule and the runtime checks).

    Args:
        backbone: The loaded causal LM (see :meth:`load`).
        max_length: Tokens of the passage at most (FlagLLMReranker's ``max_length``).
        query_max_length: Tokens of the query at most.
        prompt: The instruction after the pair (default: the kind's, as FlagEmbedding has it).
    """

    #: The kind's default prompt.
    default_prompt: ClassVar[str] = LLM_PROMPT
    #: Whether the kind runs modelling code shipped in the model folder.
    remote_code: ClassVar[bool] = False
    #: Whether rows are padded on the tokenizer's padding side (else always on the right).
    pads_on_tokenizer_side: ClassVar[bool] = True

    @classmethod
    def check_runtime(cls, folder: Path, trust_remote_code: bool) -> None:
        """Refuse, before loading, a kind whose code cannot run here (see :func:`check_remote_code`)."""
        if cls.remote_code:
            check_remote_code(folder, cls.kind, trust_remote_code)

    @classmethod
    def load(
        cls, folder: Path, *, model_name: str, device: torch.device, dtype: torch.dtype, trust_remote_code: bool
    ) -> Backbone:
        """Load the tokenizer and causal LM of ``folder`` (see :func:`load_llm`) onto ``device``."""
        cls.check_runtime(folder, trust_remote_code)
        llm, tokenizer = load_llm(folder, dtype=dtype, remote_code=cls.remote_code)
        llm.to(device).eval().requires_grad_(False)
        return Backbone(folder, "reranking", llm, tokenizer, device, dtype)

    def __init__(
        self, backbone: Backbone, *, max_length: int, query_max_length: int, prompt: str | None = None
    ) -> None:
        if prompt is not None and not isinstance(prompt, str):
            raise ConfigError(f"prompt must be a string, got {type(prompt).__name__}")
        tokenizer = backbone.tokenizer
        self.model = backbone.model
        self.device = backbone.device
        self.pairs = LLMPairEncoder(
            tokenizer,
            max_length,
            query_max_length,
            self.default_prompt if prompt is None else prompt,
            self.bos_ids(tokenizer),
        )
        self.pad_id = tokenizer.pad_token_id
        self.left = self.pads_on_tokenizer_side and getattr(tokenizer, "padding_side", "right") == "left"

    def bos_ids(self, tokenizer: Any) -> list[int]:
        """The ids that start every row: the bos token, unless it is missing or the pad token."""
        bos, pad = tokenizer.bos_token_id, tokenizer.pad_token_id
        return [bos] if bos is not None and bos != pad else []

    def prepare(self, pairs: Sequence[tuple[str, str]]) -> PreparedPairs:
        """FlagEmbedding's prompt rows; each batch padded here (multiple of 8, the kind's side)."""
        encoded = self.pairs.encode(pairs)
        rows = encoded.input_ids

        def forward(batch: batching.Batch) -> np.ndarray:
            picked = [rows[i] for i in batch.positions]
            ids, mask = self.pad(picked)
            lengths = [encoded.query_lengths[i] for i in batch.positions]
            return self._forward(ids, mask, lengths, encoded.prompt_length)

        return PreparedPairs(rows, encoded.truncated, forward)

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad rows on the kind's side to a multiple of 8, as FlagEmbedding's collator does."""
        longest = max(len(r) for r in rows)
        width = -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            span = slice(width - len(row), width) if self.left else slice(0, len(row))
            ids[i, span] = row
            mask[i, span] = 1
        return torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)

    @staticmethod
    def _last(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The value at each row's last real token (FlagEmbedding's last_logit_pool)."""
        if bool(mask[:, -1].all()):
            return values[:, -1]
        last = mask.sum(dim=1) - 1
        return values[torch.arange(values.shape[0], device=values.device), last]

    @abstractmethod
    def _forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor, query_lengths: list[int], prompt_length: int
    ) -> np.ndarray:
        """Scores of one padded batch: shape ``(n_outputs, rows)``, float32."""


class LayeredScorer(DecoderScorer):
    """An LLM reranker with a score head per layer from ``start_layer``, run with its own modelling code.

    Args:
        backbone, max_length, query_max_length, prompt: As for :class:`DecoderScorer`.
        cutoff_layers: The layer(s) whose score head is used (default: the last).
    """

    remote_code = True

    def __init__(
        self,
        backbone: Backbone,
        *,
        max_length: int,
        query_max_length: int,
        prompt: str | None = None,
        cutoff_layers: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__(backbone, max_length=max_length, query_max_length=query_max_length, prompt=prompt)
        layers = check_layers("cutoff_layers", cutoff_layers)
        config = self.model.config
        top = int(config.num_hidden_layers)
        start = int(getattr(config, "start_layer", 0) or 0)
        for layer in layers or ():
            if not start <= layer <= top:
                raise ConfigError(f"cutoff_layers must lie in [{start}, {top}] for this model, got {layer}")
        self.cutoff_layers = layers

    def bos_ids(self, tokenizer: Any) -> list[int]:
        """The bos token, which these kinds require."""
        bos = tokenizer.bos_token_id
        if bos is None:
            raise ModelLoadError(f"The {self.kind} LLM reranker needs a tokenizer with a bos token.")
        return [bos]


__all__ = [
    "LIGHTWEIGHT_PROMPT",
    "LLMKind",
    "LLMPairEncoder",
    "LLMPairs",
    "LLM_PROMPT",
    "NATIVE_CAUSAL_TYPES",
    "REGISTERED_KINDS",
    "DecoderScorer",
    "LayeredScorer",
    "check_layers",
    "check_remote_code",
    "detect_kind",
    "load_llm",
]
