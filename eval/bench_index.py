"""Indexing throughput: the whole pipeline against raw fp32 sentence-transformers, one run.

    python -m eval.bench_index [--n 240] [--device cpu|cuda] [--backend auto|torch|onnx]

Every row works on the same real paragraphs (whole documents from ../shared/corpus/party, in
name order, until --n passages). Rows: raw fp32 sentence-transformers `encode` (the baseline);
each stage alone (segmentation on every core, the Embedder, the topic classifier); and the
end-to-end `index_paths` into a fresh index (read → segment → embed → classify → store), with
segmentation overlapped in worker processes. Prints passages/second and the ratios the
performance targets speak of.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def _documents(n: int) -> tuple[list[Path], list]:
    from nlp.paragraphs import split_passages
    from nlp.reader import read_document

    files, passages = [], []
    for path in sorted((CORPUS / "party").iterdir()):
        files.append(path)
        passages.extend(split_passages(read_document(path)))
        if len(passages) >= n:
            break
    return files, passages


def _rate(label: str, count: int, seconds: float, rows: list) -> float:
    rate = count / seconds
    rows.append((label, count, seconds, rate))
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--workers", type=int, default=None, help="Segmentation processes.")
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    from api.loading import load_classifier, load_embedder
    from index.indexer import default_segment_workers, index_paths
    from models.e5_build import build_e5_small
    from nlp.segment import segment_texts

    cores = os.cpu_count() or 1
    files, passages = _documents(args.n)
    texts = [p.text for p in passages]
    rows: list = []

    raw = SentenceTransformer(build_e5_small(), device=args.device)
    raw.encode(["passage: " + t for t in texts[:16]], batch_size=32)
    started = time.perf_counter()
    raw.encode(["passage: " + t for t in texts], batch_size=32)
    baseline = _rate(
        "raw sentence-transformers fp32", len(texts), time.perf_counter() - started, rows
    )
    del raw

    segment_texts(texts[:4])
    started = time.perf_counter()
    tokens = segment_texts(texts, workers=cores)
    seg_rate = _rate(
        f"segmentation alone ({cores} processes)", len(texts), time.perf_counter() - started, rows
    )

    embedder = load_embedder(None, args.device, args.backend)
    workers = args.workers if args.workers is not None else default_segment_workers(embedder.device)
    embedder.embed_passages(texts[:16])
    started = time.perf_counter()
    embedder.embed_passages(texts)
    emb_rate = _rate(
        f"Embedder alone ({getattr(embedder, 'backend', '?')})",
        len(texts),
        time.perf_counter() - started,
        rows,
    )

    classifier = load_classifier()
    classifier.predict(texts[:4], tokens=tokens[:4])
    started = time.perf_counter()
    classifier.predict(texts, tokens=tokens, sections=[p.section for p in passages])
    _rate("topic classifier alone", len(texts), time.perf_counter() - started, rows)

    folder = Path(tempfile.mkdtemp(prefix="vnsearch-bench-"))
    try:
        started = time.perf_counter()
        report = index_paths(files, folder / "idx", embedder, classifier, segment_workers=workers)
        e2e = _rate(
            f"end-to-end index_paths ({workers} segmenting processes)",
            report.passages,
            time.perf_counter() - started,
            rows,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"{len(files)} documents, {len(texts)} passages, device {args.device}, {cores} cores")
    print(f"{'step':<52}{'passages':>9}{'seconds':>9}{'per s':>9}")
    for label, count, seconds, rate in rows:
        print(f"{label:<52}{count:>9}{seconds:>9.1f}{rate:>9.1f}")
    slowest = min(seg_rate, emb_rate)
    print(f"end-to-end / raw fp32 baseline: {e2e / baseline:.2f}x")
    print(f"end-to-end / slowest stage alone ({slowest:.1f}/s): {e2e / slowest:.2f}")


if __name__ == "__main__":
    main()
