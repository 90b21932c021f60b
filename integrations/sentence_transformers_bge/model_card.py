"""The README.md of an exported folder: what it is, how to load it, and what to watch for.

sentence-transformers' own generated card would run inference on sample sentences, call the
folder "trained", and show a SparseEncoder snippet without the ``trust_remote_code=True`` the
sparse folder needs; this short card says what was exported instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_LOAD = {
    "dense": (
        "SentenceTransformer",
        'model = SentenceTransformer("{out}")\n'
        'q = model.encode_query(["what is BGE?"])\n'
        'd = model.encode_document(["BGE is an embedding model."])\n'
        "print(model.similarity(q, d))",
    ),
    "sparse": (
        "SparseEncoder",
        'model = SparseEncoder("{out}", trust_remote_code=True)\n'
        '# or, without the flag: sentence_transformers_bge.load_sparse_encoder("{out}")\n'
        'q = model.encode_query(["what is BGE?"])\n'
        "print(model.decode(q, top_k=5))",
    ),
    "colbert": (
        "MultiVectorEncoder",
        'model = MultiVectorEncoder("{out}")\n'
        'q = model.encode_query(["what is BGE?"])\n'
        'd = model.encode_document(["BGE is an embedding model."])\n'
        "print(model.similarity(q, d))  # meanmaxsim, as FlagEmbedding",
    ),
    "reranker": (
        "CrossEncoder",
        'model = CrossEncoder("{out}")\nprint(model.predict([("what is BGE?", "BGE is an embedding model.")]))',
    ),
}

# The Hub's task of each kind, as sentence-transformers' own cards give it.
PIPELINE_TAGS = {
    "dense": "sentence-similarity",
    "sparse": "feature-extraction",
    "colbert": "feature-extraction",
    "reranker": "text-ranking",
}

_GIVES = {
    "dense": "dense vectors equal to `bge_core.Embedder(..., precision='fp32')`'s `encode_queries` / "
    "`encode_documents` (FlagEmbedding's `FlagModel` at fp32)",
    "sparse": "BGE-M3 lexical weights equal to `bge_core.Embedder(..., precision='fp32').encode(..., sparse=True)` "
    "(FlagEmbedding's `BGEM3FlagModel` at fp32): the ids with a weight are the non-zero entries",
    "colbert": "BGE-M3 ColBERT vectors equal to `bge_core.Embedder(..., precision='fp32').encode(..., colbert=True)` "
    "(FlagEmbedding's `BGEM3FlagModel` at fp32), scored with meanmaxsim",
    "reranker": "scores equal to `bge_core.Reranker(..., precision='fp32').score` (FlagEmbedding's `FlagReranker` "
    "at fp32)",
}

_NOTES = {
    "dense": [],
    "sparse": [
        "The lexical head is a custom module (`m3_lexical_weights.py`, in this folder), so sentence-transformers "
        "6 loads it only with `trust_remote_code=True`; read the file first. It needs only torch and "
        "sentence-transformers, and a model loaded from this folder and saved again (`save`, `push_to_hub`, "
        "training) writes a folder that loads the same way.",
    ],
    "colbert": [
        "Built from sentence-transformers' own modules: no `trust_remote_code` needed.",
        "The mask skips the CLS token by id, for queries and documents; a CLS token typed literally into a text "
        "is skipped as well (FlagEmbedding skips only the first token).",
    ],
    "reranker": [
        "Pairs are truncated by the tokenizer's longest-first rule. FlagReranker caps the query at 3/4 of the "
        "maximum length first, so a pair that is too long and whose query is longer than about half the maximum "
        "length can score differently.",
    ],
}


def source_metadata(source: str | Path, folder: Path) -> dict[str, str]:
    """``base_model`` and ``license`` of the model exported, where they are known.

    ``base_model`` is a hub id only: ``source`` itself when it is one, or the repository of a hub
    cache snapshot (``.../models--ORG--NAME/snapshots/...``). A plain local folder has none (its
    path is never written). ``license`` is the one the source model's own card declares.
    """
    found: dict[str, str] = {}
    given = str(source)
    if not Path(given).expanduser().exists() and given.count("/") <= 1:
        found["base_model"] = given
    else:
        for part in Path(given).expanduser().resolve().parts:
            if part.startswith("models--") and part.count("--") >= 2:
                found["base_model"] = part[len("models--") :].replace("--", "/", 1)
    try:
        from huggingface_hub.repocard import metadata_load

        card = metadata_load(folder / "README.md") if (folder / "README.md").is_file() else None
    except (OSError, ValueError) as exc:  # an unreadable card: no license claimed
        logger.warning("Could not read %s: %s", folder / "README.md", exc)
        card = None
    license_ = (card or {}).get("license")
    if isinstance(license_, str) and license_.strip():
        found["license"] = license_.strip()
    return found


def model_card(kind: str, source: str | Path, out_dir: Path, built: Any, folder: Path) -> str:
    """The card of ``built`` (a sentence-transformers model of ``kind``) saved in ``out_dir``.

    Args:
        kind: The export kind.
        source: The model as the user named it (hub id or path).
        out_dir: The folder written; only its name appears in the card.
        built: The sentence-transformers model saved there.
        folder: The local folder of ``source`` (its card gives the license).
    """
    class_name, snippet = _LOAD[kind]
    meta = source_metadata(source, folder)
    settings = [f"- Maximum sequence length: {built.max_seq_length} tokens"]
    prompts = {name: text for name, text in getattr(built, "prompts", {}).items() if text}
    if kind != "reranker":
        settings.append(f"- Prompts: {prompts or 'none'}")
        settings.append(f"- Similarity: {built.similarity_fn_name}")
    else:
        settings.append(f"- Activation: {type(built.activation_fn).__name__}")
    notes = "".join(f"- {note}\n" for note in _NOTES[kind])
    header = ["library_name: sentence-transformers", f"pipeline_tag: {PIPELINE_TAGS[kind]}"]
    header += [f"{key}: {meta[key]}" for key in ("base_model", "license") if key in meta]
    name = meta["base_model"].rsplit("/", 1)[-1] if "base_model" in meta else Path(given_name(source)).name
    origin = f"`{meta['base_model']}`" if "base_model" in meta else f"a local folder named `{name}`"
    license_line = (
        f"License: {meta['license']}, as the source model's card declares.\n"
        if "license" in meta
        else "The source model's card declares no license; check its terms before publishing this folder.\n"
    )
    versions = (
        "Loads with sentence-transformers 5.x and 6.x."
        if kind in ("dense", "reranker")
        else "Written in the sentence-transformers 6 format (loads with sentence-transformers >= 6.0)."
    )
    return (
        "---\n" + "\n".join(header) + f"\ntags:\n- sentence-transformers\n- bge\n- bge-rag\n- {kind}\n"
        "---\n\n"
        f"# {name} as a sentence-transformers {class_name}\n\n"
        f"Exported from {origin} by bge-rag (`bge-rag export-st --kind {kind}`). It gives {_GIVES[kind]}.\n"
        f"{versions}\n{license_line}\n"
        "```python\n"
        f"from sentence_transformers import {class_name}\n\n"
        f"{snippet.format(out=out_dir.name)}\n"
        "```\n\n"
        "(Run it from the folder that holds this one, or give the full path.)\n\n"
        + "\n".join(settings)
        + "\n"
        + (f"\n{notes}" if notes else "")
    )


def given_name(source: str | Path) -> str:
    """``source`` without a trailing slash, so that its last part is the model's name."""
    return str(source).rstrip("/\\") or str(source)
