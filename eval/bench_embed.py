"""Embedding throughput: raw fp32 sentence-transformers against the Embedder's backends.

Every row embeds the same real paragraphs (the first N passages of ../shared/corpus/party/),
with the `passage: ` prompt, after one warm-up batch; the best of --repeat runs counts. Cosines
compare each row's vectors with the first row's (raw fp32 sentence-transformers, CPU first):

    python -m eval.bench_embed --n 200 --batch-size 32
    python -m eval.bench_embed --device cuda      # the CUDA rows alone, when there is a GPU
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlp.errors import VnsearchError

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
ONNX_SHORT_MAX_LENGTH = 256


@dataclass(frozen=True)
class BenchRow:
    """One measured configuration."""

    device: str
    variant: str
    seconds: float
    passages_per_s: float
    speedup: float
    cosine_mean: float
    cosine_min: float


def load_paragraphs(n: int, folder: Path = CORPUS / "party") -> list[str]:
    """Return the first `n` passages of the documents in `folder`, files in name order.

    Raises:
        VnsearchError: The folder holds fewer than `n` passages.
    """
    from nlp.paragraphs import split_passages
    from nlp.reader import read_document

    texts: list[str] = []
    for path in sorted(folder.iterdir()):
        texts.extend(passage.text for passage in split_passages(read_document(path)))
        if len(texts) >= n:
            return texts[:n]
    raise VnsearchError(f"{folder} holds {len(texts)} passages, fewer than --n {n}")


def token_counts(texts: Sequence[str]) -> list[int]:
    """Return each text's token count with the `passage: ` prompt and <s> </s>, untruncated."""
    from tokenizers import Tokenizer

    from models.e5_build import build_e5_small

    tokenizer = Tokenizer.from_file(str(Path(build_e5_small()) / "tokenizer.json"))
    return [len(e.ids) for e in tokenizer.encode_batch([f"passage: {t}" for t in texts])]


def _best_time(
    encode: Callable[[list[str]], np.ndarray], texts: list[str], warmup: int, repeat: int
) -> tuple[float, np.ndarray]:
    encode(texts[:warmup])
    best, vectors = float("inf"), np.empty(0)
    for _ in range(repeat):
        start = time.perf_counter()
        vectors = encode(texts)
        best = min(best, time.perf_counter() - start)
    return best, np.asarray(vectors, dtype=np.float32)


def run_benchmark(
    texts: list[str], devices: Sequence[str], batch_size: int, repeat: int
) -> list[BenchRow]:
    """Time raw sentence-transformers and each Embedder backend on `texts`.

    Args:
        texts: The paragraphs to embed.
        devices: "cpu" and/or "cuda"; ONNX rows run on the CPU only.
        batch_size: Texts per forward pass, for every row.
        repeat: Timed runs per row; the fastest counts.

    Returns:
        One row per configuration; speedups are against raw fp32 on the same device.
    """
    from sentence_transformers import SentenceTransformer

    from models.e5_build import build_e5_small
    from models.embedder import E5_PROMPTS, Embedder

    path = build_e5_small()
    reference: np.ndarray | None = None
    rows: list[BenchRow] = []
    for device in devices:
        raw = SentenceTransformer(path, device=device, local_files_only=True)

        def raw_encode(batch: list[str], model: SentenceTransformer = raw) -> np.ndarray:
            return model.encode(
                batch,
                prompt=E5_PROMPTS["passage"],
                batch_size=batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
            )

        variants: list[tuple[str, Callable[[list[str]], np.ndarray]]] = [
            ("raw sentence-transformers fp32", raw_encode),
            ("Embedder torch fp32", Embedder(None, device, batch_size).embed_passages),
        ]
        if device == "cpu":
            for max_length in (None, ONNX_SHORT_MAX_LENGTH):
                onnx = Embedder(None, device, batch_size, backend="onnx", max_length=max_length)
                variants.append((f"Embedder onnx int8, max {onnx.max_length}", onnx.embed_passages))
        baseline = None
        for variant, encode in variants:
            seconds, vectors = _best_time(encode, texts, batch_size, repeat)
            if reference is None:
                reference = vectors
            baseline = baseline or seconds
            cosines = (vectors * reference).sum(axis=1)
            rows.append(
                BenchRow(
                    device=device,
                    variant=variant,
                    seconds=round(seconds, 2),
                    passages_per_s=round(len(texts) / seconds, 1),
                    speedup=round(baseline / seconds, 2),
                    cosine_mean=round(float(cosines.mean()), 5),
                    cosine_min=round(float(cosines.min()), 5),
                )
            )
    return rows


def _table(rows: Sequence[BenchRow]) -> str:
    header = f"{'device':<7} {'variant':<32} {'s':>7} {'pass/s':>8} {'x raw':>6} {'cos mean':>9} "
    lines = [header + f"{'cos min':>8}"]
    for row in rows:
        lines.append(
            f"{row.device:<7} {row.variant:<32} {row.seconds:>7.2f} {row.passages_per_s:>8.1f} "
            f"{row.speedup:>6.2f} {row.cosine_mean:>9.5f} {row.cosine_min:>8.5f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: measure and print the table.

    Returns:
        0 on success, 2 when the corpus or a device is not available.
    """
    parser = argparse.ArgumentParser(prog="python -m eval.bench_embed", description=__doc__)
    parser.add_argument(
        "--device", choices=("all", "cpu", "cuda"), default="all", help="Which devices to time."
    )
    parser.add_argument("--n", type=int, default=200, help="How many paragraphs.")
    parser.add_argument("--batch-size", type=int, default=32, help="Texts per forward pass.")
    parser.add_argument("--repeat", type=int, default=2, help="Timed runs; the best counts.")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    has_cuda = torch.cuda.is_available()
    if args.device == "cuda" and not has_cuda:
        sys.stderr.write("error: --device cuda, but torch sees no CUDA device\n")
        return 2
    devices = {"all": ["cpu", "cuda"] if has_cuda else ["cpu"], "cpu": ["cpu"], "cuda": ["cuda"]}
    try:
        texts = load_paragraphs(args.n)
        rows = run_benchmark(texts, devices[args.device], args.batch_size, args.repeat)
    except VnsearchError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    lengths = token_counts(texts)
    sys.stdout.write(
        f"{len(texts)} paragraphs from {CORPUS / 'party'}: {np.mean(lengths):.0f} tokens on "
        f"average, {sum(n > ONNX_SHORT_MAX_LENGTH for n in lengths)} over "
        f"{ONNX_SHORT_MAX_LENGTH}, {sum(n > 512 for n in lengths)} over 512; batch size "
        f"{args.batch_size}, best of {args.repeat}, torch threads {torch.get_num_threads()}\n"
    )
    sys.stdout.write(_table(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
