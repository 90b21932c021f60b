"""The README.md of an exported folder: what it is, how to load it, and what to watch for.

sentence-transformers' own generated card would run inference on sample sentences, call the
folder "trained", and show a SparseEncoder snippet without the ``trust_remote_code=True`` the
sparse folder needs; this short card says what was exported instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

_LOAD = {
    "dense": ("SentenceTransformer", 'model = SentenceTransformer("{out}")\n'
                                     'q = model.encode_query(["what is BGE?"])\n'
                                     'd = model.encode_document(["BGE is an embedding model."])\n'
                                     "print(model.similarity(q, d))"),
    "sparse": ("SparseEncoder", 'model = SparseEncoder("{out}", trust_remote_code=True)\n'
                                "# or, without the flag: sentence_transformers_bge.load_sparse_encoder(\"{out}\")\n"
                                'q = model.encode_query(["what is BGE?"])\n'
                                "print(model.decode(q, top_k=5))"),
    "colbert": ("MultiVectorEncoder", 'model = MultiVectorEncoder("{out}")\n'
                                      'q = model.encode_query(["what is BGE?"])\n'
                                      'd = model.encode_document(["BGE is an embedding model."])\n'
                                      "print(model.similarity(q, d))  # meanmaxsim, as FlagEmbedding"),
    "reranker": ("CrossEncoder", 'model = CrossEncoder("{out}")\n'
                                 'print(model.predict([("what is BGE?", "BGE is an embedding model.")]))'),
}

_GIVES = {
    "dense": "dense vectors equal to `bge_core.Embedder.encode_queries` / `encode_documents` "
             "(FlagEmbedding's `FlagModel`)",
    "sparse": "BGE-M3 lexical weights equal to `bge_core.Embedder.encode(..., sparse=True)` "
              "(FlagEmbedding's `BGEM3FlagModel`): the ids with a weight are the non-zero entries",
    "colbert": "BGE-M3 ColBERT vectors equal to `bge_core.Embedder.encode(..., colbert=True)` "
               "(FlagEmbedding's `BGEM3FlagModel`), scored with meanmaxsim",
    "reranker": "scores equal to `bge_core.Reranker.score` (FlagEmbedding's `FlagReranker`)",
}

_NOTES = {
    "dense": [],
    "sparse": [
        "The lexical head is a custom module (`m3_lexical_weights.py`, in this folder), so sentence-transformers "
        "6 loads it only with `trust_remote_code=True`; read the file first.",
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


def model_card(kind: str, source: Union[str, Path], out_dir: Path, built: Any) -> str:
    """The card of ``built`` (a sentence-transformers model of ``kind``) saved in ``out_dir``."""
    class_name, snippet = _LOAD[kind]
    settings = [f"- Maximum sequence length: {built.max_seq_length} tokens"]
    prompts = {name: text for name, text in getattr(built, "prompts", {}).items() if text}
    if kind != "reranker":
        settings.append(f"- Prompts: {prompts or 'none'}")
        settings.append(f"- Similarity: {built.similarity_fn_name}")
    else:
        settings.append(f"- Activation: {type(built.activation_fn).__name__}")
    notes = "".join(f"- {note}\n" for note in _NOTES[kind])
    return (
        "---\n"
        "library_name: sentence-transformers\n"
        f"tags:\n- sentence-transformers\n- bge\n- bge-rag\n- {kind}\n"
        "---\n\n"
        f"# {Path(str(source)).name} as a sentence-transformers {class_name}\n\n"
        f"Exported from `{source}` by bge-rag (`bge-rag export-st --kind {kind}`). It gives {_GIVES[kind]}.\n"
        "Written in the sentence-transformers 6 format (loads with sentence-transformers >= 6.0).\n\n"
        "```python\n"
        f"from sentence_transformers import {class_name}\n\n"
        f"{snippet.format(out=out_dir)}\n"
        "```\n\n"
        + "\n".join(settings)
        + "\n"
        + (f"\n{notes}" if notes else "")
    )
