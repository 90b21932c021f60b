"""The sentence-transformers modules that follow Pooling in a folder's ``modules.json``.

A sentence-transformers folder lists its pipeline in ``modules.json``: ``Transformer``, then
``Pooling``, then optional modules on the pooled vector. bge_core runs the transformer and the
pooling itself and applies the modules after it exactly as sentence-transformers does:

- ``Dense``: ``activation(linear(x))`` (plus ``residual(x)`` or ``x`` with ``use_residual``),
  weights from the module's folder, the activation a ``torch.nn`` class named by
  ``activation_function`` (``Tanh`` when the key is absent, sentence-transformers' default).
- ``Normalize``: L2 normalization.
- ``Dropout``: nothing (it is the identity at inference).

Any other module (``LayerNorm``, ``WordWeights``, ``CNN``, ``LSTM``, ``Router``/``Asym``, a
custom class, a module before Pooling, ...) is refused with
:class:`~bge_core.errors.UnsupportedModelError` naming it: bge_core never returns vectors that
skip part of a model. Unlike sentence-transformers, an activation outside ``torch.`` is refused
rather than replaced by ``Tanh``.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .errors import ConfigError, ModelLoadError, UnsupportedModelError

_PREFIX = "sentence_transformers."
_SUPPORTED_AFTER_POOLING = ("Dense", "Normalize", "Dropout")
_EMBEDDING_KEY = "sentence_embedding"


@dataclass(frozen=True)
class DenseLayer:
    """A sentence-transformers ``Dense`` module, in float32 on the model's device."""

    linear: torch.nn.Linear
    activation: torch.nn.Module
    residual: torch.nn.Linear | None = None
    use_residual: bool = False

    @property
    def out_features(self) -> int:
        """The length of the vectors this module gives."""
        return int(self.linear.out_features)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the module to ``(batch, in_features)`` float32 vectors."""
        out = self.activation(self.linear(x))
        if self.use_residual:
            out = out + (x if self.residual is None else self.residual(x))
        return out


class NormalizeLayer:
    """A sentence-transformers ``Normalize`` module."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalize each row of ``x``."""
        return F.normalize(x, p=2, dim=-1)


@dataclass(frozen=True)
class PostPooling:
    """The modules applied to pooled vectors, in ``modules.json`` order.

    Attributes:
        layers: The callables, each mapping ``(batch, dim)`` float32 to ``(batch, dim')``.
        names: Their module names (``"Dense"``, ``"Normalize"``), for display.
    """

    layers: tuple[Any, ...] = ()
    names: tuple[str, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.layers)

    def output_dim(self, hidden_size: int) -> int:
        """The vector length after every module, from the pooled length ``hidden_size``."""
        dim = hidden_size
        for layer in self.layers:
            if isinstance(layer, DenseLayer):
                dim = layer.out_features
        return dim

    @property
    def normalizes(self) -> bool:
        """Whether the last module that changes vectors is a ``Normalize``."""
        return bool(self.layers) and isinstance(self.layers[-1], NormalizeLayer)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Apply every module to pooled ``(batch, dim)`` float32 vectors, in order."""
        for layer in self.layers:
            x = layer(x)
        return x


def _read_modules(folder: Path) -> list[dict] | None:
    path = folder / "modules.json"
    if not path.is_file():
        return None
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"Cannot read {path}: {exc}") from exc
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ConfigError(f"{path} is not a sentence-transformers modules list.")
    return sorted(modules, key=lambda m: int(m.get("idx", 0)))


def _short_name(type_name: str) -> str | None:
    """The short name of a sentence-transformers module class, or ``None``.

    ``"Dense"`` for ``sentence_transformers.models.Dense`` and its newer paths; ``None`` for
    classes outside sentence-transformers (custom code, other libraries).
    """
    return type_name.rsplit(".", 1)[-1] if type_name.startswith(_PREFIX) else None


def _refuse(folder: Path, module: dict, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"{folder / 'modules.json'} lists the module {module.get('type')!r} (path {module.get('path')!r}), "
        f"{why}; bge_core runs only Transformer, Pooling and then Dense, Normalize or Dropout, and refuses "
        f"rather than return vectors that skip part of the model. Use sentence-transformers for this model."
    )


def _config(folder: Path, module: dict) -> dict:
    path = folder / str(module.get("path", "")) / "config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"Cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _activation(folder: Path, module: dict, name: Any) -> torch.nn.Module:
    if name is None:
        return torch.nn.Tanh()  # sentence-transformers' default when the key is absent
    if not isinstance(name, str) or not name.startswith("torch."):
        raise _refuse(folder, module, f"whose activation_function {name!r} is not a torch class")
    module_path, _, class_name = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_path), class_name)
    except (ImportError, AttributeError) as exc:
        raise _refuse(folder, module, f"whose activation_function {name!r} does not exist in torch") from exc
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise _refuse(folder, module, f"whose activation_function {name!r} is not a torch.nn.Module class")
    return cls()


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    safetensors = directory / "model.safetensors"
    if safetensors.is_file():
        from safetensors.torch import load_file

        return load_file(str(safetensors))
    pickle = directory / "pytorch_model.bin"
    if pickle.is_file():
        try:
            return torch.load(str(pickle), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a corrupt or foreign pickle
            raise ModelLoadError(f"Cannot read {pickle}: {exc}") from exc
    raise ModelLoadError(f"{directory} has no Dense weights (model.safetensors or pytorch_model.bin).")


def _dense(folder: Path, module: dict, in_dim: int, device: torch.device) -> DenseLayer:
    config = _config(folder, module)
    for key in ("module_input_name", "module_output_name"):
        if config.get(key) not in (None, _EMBEDDING_KEY):
            raise _refuse(folder, module, f"which works on {config[key]!r} instead of the sentence embedding")
    in_features, out_features = config.get("in_features"), config.get("out_features")
    if in_features != in_dim or not isinstance(out_features, int):
        raise ModelLoadError(
            f"{folder / str(module.get('path', ''))}: a Dense({in_features}, {out_features}) cannot follow "
            f"vectors of dimension {in_dim}."
        )
    bias = bool(config.get("bias", True))
    use_residual = bool(config.get("use_residual", False))
    state = _weights(folder / str(module.get("path", "")))
    linear = torch.nn.Linear(in_dim, out_features, bias=bias)
    residual = torch.nn.Linear(in_dim, out_features, bias=False) if use_residual and in_dim != out_features else None
    expected = {"linear.weight", *(["linear.bias"] if bias else []), *(["residual.weight"] if residual else [])}
    if set(state) != expected:
        raise ModelLoadError(
            f"{folder / str(module.get('path', ''))}: Dense weights {sorted(state)} do not match its config "
            f"(expected {sorted(expected)})."
        )
    try:
        linear.load_state_dict({k[len("linear.") :]: v for k, v in state.items() if k.startswith("linear.")})
        if residual is not None:
            residual.load_state_dict({"weight": state["residual.weight"]})
    except RuntimeError as exc:
        raise ModelLoadError(f"{folder / str(module.get('path', ''))}: Dense weights do not fit: {exc}") from exc
    activation = _activation(folder, module, config.get("activation_function"))
    for part in (linear, residual, activation):
        if part is not None:
            part.to(device=device, dtype=torch.float32).eval().requires_grad_(False)
    return DenseLayer(linear, activation, residual, use_residual)


def load_post_pooling(folder: Path, hidden_size: int, device: torch.device) -> PostPooling:
    """Read ``modules.json`` and load the modules that follow Pooling.

    A folder without ``modules.json`` (a plain Hugging Face folder) has none.

    Raises:
        UnsupportedModelError: a module bge_core does not implement, named in the message.
        ModelLoadError: a Dense module whose weights are missing or do not fit.
    """
    modules = _read_modules(folder)
    if not modules:
        return PostPooling()
    names = [_short_name(str(m.get("type", ""))) for m in modules]
    if names[0] != "Transformer":
        raise _refuse(folder, modules[0], "where bge_core expects the Transformer first")
    if str(modules[0].get("path", "")) not in ("", "."):
        raise _refuse(folder, modules[0], "a transformer kept in a subfolder, not at the top of the folder")
    if "Pooling" not in names:
        raise _refuse(folder, modules[-1], "and no Pooling module")
    pooling_at = names.index("Pooling")
    if pooling_at != 1:
        raise _refuse(folder, modules[1], "between the Transformer and Pooling")
    layers: list[Any] = []
    kept: list[str] = []
    dim = hidden_size
    for module, name in zip(modules[2:], names[2:]):
        if name not in _SUPPORTED_AFTER_POOLING:
            raise _refuse(folder, module, "which bge_core does not implement")
        if name == "Dense":
            layer = _dense(folder, module, dim, device)
            dim = layer.out_features
            layers.append(layer)
        elif name == "Normalize":
            config = _config(folder, module)
            if config.get("module_input_name", _EMBEDDING_KEY) != _EMBEDDING_KEY:
                raise _refuse(folder, module, "which normalizes token embeddings, not the sentence embedding")
            layers.append(NormalizeLayer())
        else:  # Dropout: the identity at inference
            continue
        kept.append(name)
    return PostPooling(tuple(layers), tuple(kept))


__all__ = ["DenseLayer", "NormalizeLayer", "PostPooling", "load_post_pooling"]
