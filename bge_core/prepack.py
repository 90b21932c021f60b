"""Prepacked bf16 Linear weights on CPUs: the same accuracy, less time per call.

torch's bf16 ``F.linear`` on a CPU goes to oneDNN with the weight in its plain layout, and oneDNN
repacks that weight into its blocked (AMX / AVX512-BF16) layout on every call. For the small
batches of a server (a few queries of ~10 tokens) the repacking can cost as much as the product
itself (run ``benchmarks/serve_load.py`` with and without ``BGE_RAG_PREPACK=0`` to see the effect).

:func:`prepack_encoder` packs the weights of the ``nn.Linear`` layers of an encoder's transformer
layers once (``torch.ops.mkldnn._reorder_linear_weight``, the op torch's own compiler uses for
bf16 CPU Linear) and routes those layers through ``torch.ops.mkldnn._linear_pointwise``. The
result is not always bit-identical to ``F.linear`` (oneDNN may pick another kernel for some shapes
and row counts: 1-ulp bf16 differences), so it is only done where it is as accurate: before packing,
every distinct layer shape is checked on random inputs of several row counts (1 to 300 rows, 2-D
and 3-D) on this machine with this torch against a float64 product, and the packed error must be at
most twice ``F.linear``'s (plus one ulp). A failed check, a torch without the ops, fp32/fp16, an
accelerator or ``BGE_RAG_PREPACK=0`` leaves the model as it was. The plain weights are then
released, so memory stays as it was.

Only the encoder layers are packed (``model.base_model.encoder``: BERT, XLM-RoBERTa and their
kin, i.e. the BGE embedders, BGE-M3 and the cross-encoder rerankers); decoder LLMs, tied weights
and heads are left alone.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .env import read_env

logger = logging.getLogger(__name__)

#: Row counts the accuracy check runs each layer shape with (a server's single query, small
#: coalesced batches, a CPU token-budget batch).
CHECK_ROWS = (1, 3, 12, 37, 300)


def _ops() -> tuple[Any, Any] | None:
    mkldnn = getattr(torch.ops, "mkldnn", None)
    try:
        if mkldnn is None or not torch.backends.mkldnn.is_available():
            return None
        return mkldnn._reorder_linear_weight, mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):  # a torch build without these ops
        return None


def prepack_setting() -> bool:
    """``BGE_RAG_PREPACK`` (:mod:`bge_core.env`, read now: when a model is loaded).

    Off only when set to ``0`` / ``false`` / ``no`` / ``off`` (any other value but ``1`` /
    ``true`` / ``yes`` / ``on`` is a ``ConfigError``, as for the other flags).
    """
    return read_env().prepack is not False


def _as_accurate(in_features: int, out_features: int, bias: bool, dtype: torch.dtype, ops: tuple[Any, Any]) -> bool:
    """Whether the prepacked product is as close to the fp32 product as ``F.linear``'s.

    Checked on random inputs of this shape: at most twice ``F.linear``'s largest error, plus one
    ulp of the largest output.
    """
    reorder, linear = ops
    gen = torch.Generator().manual_seed(in_features * 31 + out_features)
    weight = (torch.randn(out_features, in_features, generator=gen) * in_features**-0.5).to(dtype)
    b = torch.randn(out_features, generator=gen).to(dtype) if bias else None
    packed = reorder(weight)
    inputs = [torch.randn(rows, in_features, generator=gen).to(dtype) for rows in CHECK_ROWS]
    inputs.append(torch.randn(2, 7, in_features, generator=gen).to(dtype))
    for x in inputs:
        exact = F.linear(x.double(), weight.double(), None if b is None else b.double())
        plain = (F.linear(x, weight, b).double() - exact).abs().max().item()
        got = linear(x, packed, b, "none", [], "")
        if got.shape != exact.shape or got.dtype != dtype:
            return False
        ulp = exact.abs().max().item() * torch.finfo(dtype).eps
        if not (got.double() - exact).abs().max().item() <= 2 * plain + ulp:
            return False
    return True


class _PackedForward:
    """``forward`` of one prepacked ``nn.Linear`` (the layer keeps its type, name and bias)."""

    def __init__(
        self, packed: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype, name: str, linear: Any
    ) -> None:
        self.packed, self.bias, self.dtype, self.name, self._linear = packed, bias, dtype, name, linear

    def __call__(self, input: torch.Tensor) -> torch.Tensor:  # named as nn.Linear.forward's parameter
        if input.dtype != self.dtype:
            raise RuntimeError(f"{self.name}: input is {input.dtype}, the prepacked weight {self.dtype}")
        return self._linear(input, self.packed, self.bias, "none", [], "")


def prepack_encoder(model: nn.Module, device: torch.device, dtype: torch.dtype) -> int:
    """Prepack the Linear weights of ``model``'s encoder layers where that is as accurate; returns how many.

    Must run before the first forward and only on a model used for inference (the packed layers
    have no weight parameter any more).
    """
    if device.type != "cpu" or dtype != torch.bfloat16 or not prepack_setting():
        return 0
    ops = _ops()
    encoder = getattr(getattr(model, "base_model", None), "encoder", None)
    if ops is None or not isinstance(encoder, nn.Module):
        return 0
    owners: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        owners[id(param)] = owners.get(id(param), 0) + 1
    layers = [
        (name, module)
        for name, module in encoder.named_modules()
        if type(module) is nn.Linear
        and module.weight.dtype == dtype
        and module.weight.device.type == "cpu"
        and owners.get(id(module.weight), 0) == 1
        and not module.weight.requires_grad
    ]
    shapes = {(m.in_features, m.out_features, m.bias is not None) for _, m in layers}
    try:
        accurate = all(_as_accurate(*shape, dtype, ops) for shape in shapes)
    except RuntimeError as exc:  # the op refused this machine or shape
        logger.debug("bf16 Linear prepacking is not available here: %s", exc)
        return 0
    if not accurate:
        logger.warning("bf16 Linear prepacking is less accurate than F.linear on this machine; not used")
        return 0
    reorder, linear = ops
    with torch.no_grad():
        for name, module in layers:
            packed = reorder(module.weight.detach())
            module.forward = _PackedForward(packed, module.bias, dtype, f"encoder.{name}", linear)  # type: ignore[method-assign]
            module.weight = None  # type: ignore[assignment]  # the packed copy replaces it
    return len(layers)


__all__ = ["CHECK_ROWS", "prepack_encoder", "prepack_setting"]
