"""Indexing throughput: the whole pipeline against raw fp32 sentence-transformers, one run.

    python -m eval.bench_index [--n 240] [--device cpu|cuda] [--backend auto|torch|onnx]
                               [--workers N[,N...]] [--corpus DIR] [--repeat R]

Every row works on the same real paragraphs (whole documents from ../shared/corpus/party, in
name order, until --n passages), embedded as the index embeds them (`passage_input`: the
innermost heading, then the paragraph). Rows: segmentation alone on every core; raw fp32
sentence-transformers `encode` (the baseline; batch 32 on a CPU, 256 on CUDA, the issue's
setting); the Embedder alone, with the cosine of its vectors to the baseline's; the topic
classifier alone (given the tokens and vectors, as the indexer calls it); and the end-to-end
`index_paths` into a fresh index (read → segment → embed → classify → store), once per
--workers value. Prints passages/second and the ratios the performance targets speak of.
The same script runs on CPU-only machines and with `--device cuda`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def _documents(corpus: Path, n: int) -> tuple[list[Path], list, list[int]]:
    """Whole party documents until there are `n` passages: files, passages, file of each."""
    from nlp.paragraphs import split_passages
    from nlp.reader import read_document

    files, passages, owners = [], [], []
    for path in sorted((corpus / "party").iterdir()):
        found = split_passages(read_document(path))
        owners += [len(files)] * len(found)
        files.append(path)
        passages.extend(found)
        if len(passages) >= n:
            break
    return files, passages, owners


def _timed(function, repeat: int, label: str):
    """Run `function` `repeat` times; return the fastest seconds and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    if repeat > 1:
        print(f"{label} runs: {', '.join(f'{t:.2f}' for t in times)} s")
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--workers", default=None, help="Segmentation processes, e.g. 15,16.")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--repeat", type=int, default=1, help="Timed runs per stage row.")
    parser.add_argument("--baseline-batch", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="Profile the last end-to-end run.")
    args = parser.parse_args()

    from api.loading import load_classifier, load_embedder
    from index.indexer import default_segment_workers, index_paths
    from models.e5_build import build_e5_small
    from models.embedder import passage_input
    from nlp.segment import segment_texts

    cores = os.cpu_count() or 1
    files, passages, owners = _documents(args.corpus, args.n)
    texts = [p.text for p in passages]
    inputs = [passage_input(p.text, p.section) for p in passages]
    rows: list = []

    def row(label: str, seconds: float) -> float:
        rows.append((label, len(texts), seconds, len(texts) / seconds))
        return len(texts) / seconds

    # Segmentation first, forked from this process before any CUDA context exists.
    segment_texts(texts[:4])
    seconds, tokens = _timed(
        lambda: segment_texts(texts, workers=cores), args.repeat, "segmentation"
    )
    seg_rate = row(f"segmentation alone ({cores} processes)", seconds)

    from sentence_transformers import SentenceTransformer

    batch = args.baseline_batch or (256 if args.device.startswith("cuda") else 32)
    raw = SentenceTransformer(build_e5_small(), device=args.device)
    prompted = ["passage: " + t for t in inputs]

    def raw_encode(model: SentenceTransformer = raw) -> np.ndarray:
        return model.encode(prompted, batch_size=batch, normalize_embeddings=True)

    raw.encode(prompted[:batch], batch_size=batch)
    seconds, reference = _timed(raw_encode, args.repeat, "raw sentence-transformers")
    baseline = row(f"raw sentence-transformers fp32, batch {batch}", seconds)
    del raw, raw_encode

    embedder = load_embedder(None, args.device, args.backend)
    embedder.embed_passages(inputs[: embedder.batch_size])
    seconds, vectors = _timed(lambda: embedder.embed_passages(inputs), args.repeat, "Embedder")
    precision = "fp16" if embedder.device.startswith("cuda") else "fp32"
    kind = f"int8 ONNX, max {embedder.max_length}" if embedder.backend == "onnx" else precision
    emb_rate = row(f"Embedder alone ({embedder.backend}, {kind})", seconds)
    cosines = (vectors * reference).sum(axis=1)

    classifier = load_classifier()
    if classifier.embedding_fingerprint != embedder.fingerprint:
        # Same e5 weights written by another library version: let the classifier read the
        # index's vectors, as it does where the fingerprints agree, rather than embed again.
        print(f"warning: model fingerprint {embedder.fingerprint} is not the classifier's")
        for head in (classifier, classifier.context_model):
            if head is not None:
                head.embedding = replace(head.embedding, fingerprint=embedder.fingerprint)
    sections = [p.section for p in passages]

    def tag() -> list:  # as the indexer does: each file's paragraphs as one document
        return classifier.predict(
            texts, tokens=tokens, sections=sections, embeddings=vectors, documents=owners
        )

    tag()
    seconds, _ = _timed(tag, args.repeat, "topic classifier")
    row("topic classifier alone (given tokens and vectors)", seconds)

    counts = (
        [int(w) for w in args.workers.split(",")]
        if args.workers
        else [default_segment_workers(embedder.device)]
    )
    e2e_rates = []
    profiler = None
    for n, workers in enumerate(counts):
        folder = Path(tempfile.mkdtemp(prefix="vnsearch-bench-"))
        if args.profile and n == len(counts) - 1:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        try:
            started = time.perf_counter()
            report = index_paths(
                files, folder / "idx", embedder, classifier, segment_workers=workers
            )
            seconds = time.perf_counter() - started
        finally:
            if profiler is not None:
                profiler.disable()
            shutil.rmtree(folder, ignore_errors=True)
        assert report.passages == len(texts), (report.passages, len(texts))
        e2e_rates.append(row(f"end-to-end index_paths ({workers} segmenting processes)", seconds))
    # The same, without topic tags: what tagging costs the indexer (issue target: < 10%).
    folder = Path(tempfile.mkdtemp(prefix="vnsearch-bench-"))
    try:
        started = time.perf_counter()
        index_paths(files, folder / "idx", embedder, None, segment_workers=counts[-1])
        untagged = row(
            f"end-to-end without topics ({counts[-1]} segmenting processes)",
            time.perf_counter() - started,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    if profiler is not None:
        import pstats

        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    same = classifier.embedding_fingerprint == embedder.fingerprint
    print(f"classifier reads the index's vectors: {same} ({embedder.fingerprint})")
    print(f"{len(files)} documents, {len(texts)} passages, device {args.device}, {cores} cores")
    print(f"{'step':<56}{'passages':>9}{'seconds':>9}{'per s':>9}")
    for label, count, seconds, rate in rows:
        print(f"{label:<56}{count:>9}{seconds:>9.2f}{rate:>9.1f}")
    print(
        f"Embedder vectors vs raw fp32: cosine mean {cosines.mean():.5f}, min {cosines.min():.5f}"
    )
    print(f"Embedder alone / raw fp32 baseline: {emb_rate / baseline:.2f}x")
    slowest = min(seg_rate, emb_rate)
    for workers, rate in zip(counts, e2e_rates, strict=True):
        print(
            f"end-to-end ({workers} workers) / raw fp32 baseline: {rate / baseline:.2f}x; "
            f"/ slowest stage alone ({slowest:.1f}/s): {rate / slowest:.2f}"
        )
    print(
        f"topic tagging: end to end takes {untagged / e2e_rates[-1]:.3f}x the time without it "
        f"({counts[-1]} workers)"
    )


if __name__ == "__main__":
    main()
