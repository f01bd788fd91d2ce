"""Load the models and index the CLI and the service need, once, with clear errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_MODEL_NAME = "intfloat/multilingual-e5-small"


def load_embedder(model: str | None = None, device: str | None = None, backend: str = "auto"):  # noqa: ANN201
    """Return an Embedder for `model` (None or the default name: the bundled e5-small).

    `backend="auto"` runs the default model through int8 ONNX Runtime on a CPU (several times
    faster, vectors within 0.99 cosine of fp32, same fingerprint) and through torch elsewhere;
    other models always run through torch.
    """
    from models.embedder import Embedder

    default = model in (None, DEFAULT_MODEL_NAME)
    if backend == "auto":
        on_cpu = device in (None, "cpu") and not _cuda_available(device)
        backend = "onnx" if default and on_cpu else "torch"
    max_length = ONNX_MAX_LENGTH if backend == "onnx" else None
    return Embedder(
        None if default else model, device=device, backend=backend, max_length=max_length
    )


# Longer passages are truncated for the CPU backend: measured by eval/bench_embed.py.
ONNX_MAX_LENGTH = 256


def _cuda_available(device: str | None) -> bool:
    if device == "cpu":
        return False
    if device is None and not _nvidia_driver_present():
        return False  # no driver, no CUDA: spares importing torch (1.3 s) on a CPU machine
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _nvidia_driver_present() -> bool:
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def load_classifier(model_dir: str | None = None):  # noqa: ANN201
    """Return the topic classifier in `model_dir`, or the one shipped with vnsearch."""
    from models.topics import TopicClassifier

    return TopicClassifier.load(model_dir) if model_dir else TopicClassifier.load_default()


def open_searcher(index: str | Path, model: str | None = None, device: str | None = None):  # noqa: ANN201
    """Open the index with the embedding model it was built with (or `model`, checked)."""
    from index.search import Searcher
    from index.store import read_manifest
    from nlp.errors import IndexError_

    manifest = read_manifest(index)
    if manifest is None:
        raise IndexError_(
            f"no index at {index}; create one with: vnsearch index PATH... --index {index}"
        )
    return Searcher(index, load_embedder(model or manifest.model.name, device))
