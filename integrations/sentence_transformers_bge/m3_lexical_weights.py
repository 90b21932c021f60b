"""BGE-M3 lexical (sparse) weights as a sentence-transformers module.

This file is self-contained on purpose: it imports only torch and sentence-transformers, so an
exported SparseEncoder folder carries a copy of it and loads wherever sentence-transformers is
installed (``SparseEncoder(folder, trust_remote_code=True)``), with or without bge-rag.

The computation is BGE-M3's (FlagEmbedding's ``BGEM3FlagModel``), the same as ``bge_core``:

- a per-token weight ``relu(linear(h))`` from the backbone's last hidden states ``h``;
- the ids in ``unused_token_ids`` get no weight (the export stores the tokenizer's cls, eos, pad
  and unk ids there, FlagEmbedding's rule; BERT has no eos token, so its ``[SEP]`` keeps a weight);
- a token id seen several times keeps its largest weight.

The output is a ``(batch, vocab_size)`` tensor under ``"sentence_embedding"``, as every
SparseEncoder module produces; ids without weight are 0.

Saving: sentence-transformers copies a custom module's file into the module's own subfolder
when it saves a model, but imports it from the model's top folder when it loads one.
:meth:`M3LexicalWeights.save` therefore also puts a copy of this file at the top, so that every
save (``model.save``, ``push_to_hub``, training checkpoints) writes a folder that loads again.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from sentence_transformers.base.modules.module import Module


class M3LexicalWeights(Module):
    """BGE-M3's sparse head: token weights pooled by token id into a vocabulary-sized vector.

    Args:
        hidden_size: Width of the backbone's token embeddings.
        vocab_size: Length of the output vectors (at least the tokenizer's size).
        unused_token_ids: Token ids that never get a weight (special tokens).
    """

    config_keys: list[str] = ["hidden_size", "vocab_size", "unused_token_ids"]

    def __init__(self, hidden_size: int, vocab_size: int, unused_token_ids: list[int] | None = None) -> None:
        super().__init__()
        self.hidden_size = int(hidden_size)
        self.vocab_size = int(vocab_size)
        self.unused_token_ids = sorted({int(i) for i in unused_token_ids or []})
        self.linear = torch.nn.Linear(self.hidden_size, 1)
        self.register_buffer("_unused", torch.tensor(self.unused_token_ids, dtype=torch.long), persistent=False)

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Weight each token and pool the weights by token id into one vocabulary-sized vector per text.

        Args:
            features: The Transformer module's output: ``input_ids``, ``attention_mask`` and
                ``token_embeddings`` (a flash-attention unpadded batch is padded back first).
            **kwargs: Unused; part of the sentence-transformers module interface.

        Returns:
            ``features`` with ``"sentence_embedding"``: a ``(batch, vocab_size)`` tensor, 0 for ids
            without weight.
        """
        if "cu_seq_lens_q" in features:  # flash-attention unpadded batch: pad it back first
            from sentence_transformers.util.tensor import repad_flattened_features

            features = repad_flattened_features(features)
        input_ids = features["input_ids"]
        weights = torch.relu(self.linear(features["token_embeddings"])).squeeze(-1).float()
        keep = features["attention_mask"].bool() & ~torch.isin(input_ids, self._unused.to(input_ids.device))
        weights = torch.where(keep, weights, torch.zeros_like(weights))
        pooled = weights.new_zeros((input_ids.shape[0], self.vocab_size))
        features["sentence_embedding"] = pooled.scatter_reduce(1, input_ids, weights, reduce="amax")
        return features

    def get_embedding_dimension(self) -> int:
        """Length of the output vectors: ``vocab_size``."""
        return self.vocab_size

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Save the config and weights, and put a copy of this file where loading looks for it.

        Args:
            output_path: This module's folder.
            *args: Unused; part of the sentence-transformers module interface.
            safe_serialization: Write the weights as safetensors (else as a torch pickle).
            **kwargs: Unused; part of the sentence-transformers module interface.
        """
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)
        _copy_this_file_to_model_folder(Path(output_path))

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        **kwargs: Any,
    ) -> M3LexicalWeights:
        """Load a module saved by :meth:`save` from a local folder or the Hub.

        Args:
            model_name_or_path: Hub id or local folder of the model.
            subfolder: The module's subfolder in the model.
            token: Hugging Face token for private models.
            cache_folder: Hugging Face cache folder.
            revision: Model revision (branch, tag or commit) on the Hub.
            local_files_only: Never use the network.
            **kwargs: Unused; part of the sentence-transformers module interface.

        Returns:
            The module with its saved config and weights.
        """
        hub_kwargs = {
            "subfolder": subfolder,
            "token": token,
            "cache_folder": cache_folder,
            "revision": revision,
            "local_files_only": local_files_only,
        }
        config = cls.load_config(model_name_or_path, **hub_kwargs)
        module = cls(**{key: config[key] for key in cls.config_keys if key in config})
        return cls.load_torch_weights(model_name_or_path, model=module, **hub_kwargs)


def _copy_this_file_to_model_folder(module_dir: Path) -> None:
    """Put a copy of this file in the model folder ``module_dir`` belongs to, where loading looks.

    sentence-transformers writes ``config_sentence_transformers.json`` into the model folder
    before it saves the modules, so its presence marks ``module_dir.parent`` as that folder; a
    module saved on its own (no such file) copies nothing.
    """
    model_dir = module_dir.parent
    if not (model_dir / "config_sentence_transformers.json").is_file():
        return
    source = Path(__file__)
    target = model_dir / source.name
    if not target.exists() or target.resolve() != source.resolve():
        shutil.copyfile(source, target)
