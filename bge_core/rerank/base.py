"""The interface of one reranker model kind: load it, turn pairs into ids, score a batch.

:class:`~bge_core.rerank.Reranker` picks one :class:`PairScorer` subclass per model folder
(:data:`bge_core.rerank.SCORERS`) and delegates to it; it keeps what every kind shares (input
checks, the lock, batching, truncation reports, sigmoid, ranking). A new kind of reranker is a
new subclass in a module of its own and one entry in that table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .. import batching
from ..errors import ConfigError
from ..frozen import FrozenAfterInit
from ..loading import Backbone

#: The Reranker arguments that belong to some kinds only, and the value that means "not given".
KIND_OPTION_DEFAULTS: Mapping[str, Any] = {
    "prompt": None,
    "cutoff_layers": None,
    "compress_ratio": 1,
    "compress_layers": None,
}


@dataclass(frozen=True)
class PreparedPairs:
    """(query, passage) pairs as model input ids, and the forward pass that scores a batch of them.

    Attributes:
        input_ids: One row of token ids per pair, in input order (what the batches are planned on).
        truncated: How many pairs were cut to fit the length limits.
        forward: Scores one planned batch: a float32 array of shape ``(n_outputs, rows)``.
        token_type_ids: Token type ids per row, for models that take them.
    """

    input_ids: list[list[int]]
    truncated: int
    forward: Callable[[batching.Batch], np.ndarray]
    token_type_ids: list[list[int]] | None = None


class PairScorer(FrozenAfterInit, ABC):
    """One kind of reranker model, with the options of that kind only.

    A subclass names its :attr:`kind`, the kind options it takes (:attr:`options`, its own
    constructor keywords) and the message for options of other kinds (:attr:`refusal`); it
    implements :meth:`load` and :meth:`prepare`, and calls ``self._freeze()`` last in its
    ``__init__``, after ``max_length`` and ``query_max_length`` (resolved by the Reranker).
    """

    #: The kind's name: ``"cross-encoder"``, or an LLM reranker kind (``"llm"``, ``"layerwise"``, ...).
    kind: ClassVar[str]
    #: The kind options (Reranker arguments, see :data:`KIND_OPTION_DEFAULTS`) this kind takes.
    options: ClassVar[frozenset[str]] = frozenset()
    #: The :class:`~bge_core.errors.ConfigError` message for an option of another kind; ``{model}``
    #: is replaced by the model's name.
    refusal: ClassVar[str] = ""
    #: The layers scored, one output each (``None``: one output, the kind's own).
    cutoff_layers: list[int] | None = None

    @classmethod
    def check_options(cls, given: Mapping[str, Any], model_name: str) -> None:
        """Refuse kind options this kind does not take, before anything is loaded.

        Args:
            given: The kind options the caller gave (those differing from :data:`KIND_OPTION_DEFAULTS`).
            model_name: The model, as the caller named it.

        Raises:
            ConfigError: an option of another kind was given.
        """
        if any(name not in cls.options for name in given):
            raise ConfigError(cls.refusal.format(model=model_name))

    @classmethod
    @abstractmethod
    def load(
        cls, folder: Path, *, model_name: str, device: torch.device, dtype: torch.dtype, trust_remote_code: bool
    ) -> Backbone:
        """Load (or reuse) the model and tokenizer of ``folder`` on ``device``.

        Raises:
            ModelLoadError: the folder does not hold a complete model of this kind.
        """

    @abstractmethod
    def __init__(self, backbone: Backbone, *, max_length: int, query_max_length: int) -> None:
        """Build the scorer for a loaded model; a subclass adds its kind options as keywords.

        Args:
            backbone: The model :meth:`load` gave.
            max_length: The pair limit (what it limits is the kind's: see the Reranker's ``max_length``).
            query_max_length: Tokens of the query at most.

        Raises:
            ConfigError: a kind option has a wrong value.
        """

    @property
    def n_outputs(self) -> int:
        """How many scores each pair gets (one per cutoff layer, else one)."""
        return len(self.cutoff_layers) if self.cutoff_layers else 1

    @abstractmethod
    def prepare(self, pairs: Sequence[tuple[str, str]]) -> PreparedPairs:
        """Turn ``pairs`` into model input ids and the forward pass that scores them.

        Called under the model's lock; ``pairs`` is not empty.
        """


def given_options(**options: Any) -> dict[str, Any]:
    """The kind options that differ from :data:`KIND_OPTION_DEFAULTS` (i.e. that the caller gave)."""
    given = {}
    for name, value in options.items():
        default = KIND_OPTION_DEFAULTS[name]
        if (value is not None) if default is None else (value != default):
            given[name] = value
    return given


__all__ = ["KIND_OPTION_DEFAULTS", "PairScorer", "PreparedPairs", "given_options"]
