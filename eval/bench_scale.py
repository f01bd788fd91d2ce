"""Approximate dense search at scale: recall@10 against exact search, latency, memory.

    python -m eval.bench_scale --index DIR [--n 1000000] [--kinds hnsw,ivf] [--queries 200]
        [--nprobe 8,16,32,64] [--ef-search 64,128,256]

Builds `--n` synthetic-but-realistic vectors: perturbed copies of the real passage vectors of
an index (each copy = a real vector plus Gaussian noise, renormalised), so the collection keeps
the cluster structure of real text. Queries are real query embeddings of the eval query set
plus perturbed passage vectors. For each index kind: build time, Recall@10 against exact
(flat) search, p50/p99 latency of one query on one thread, and bytes per passage, for each
search-time setting (IVF nprobe, HNSW efSearch) on the same built index.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _real_vectors(index: Path) -> np.ndarray:
    from index.store import connect, generation_dir, read_manifest

    manifest = read_manifest(index)
    conn = connect(generation_dir(index, manifest.generation) / "passages.db", readonly=True)
    rows = conn.execute("SELECT vector FROM passages").fetchall()
    return np.stack([np.frombuffer(row["vector"], dtype=np.float32) for row in rows])


def _synthetic(real: np.ndarray, n: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        block = real[rng.integers(0, len(real), stop - start)]
        block = block + noise * rng.standard_normal(block.shape, dtype=np.float32)
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--kinds", default="hnsw,ivf")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.03)
    parser.add_argument("--nprobe", default="8,16,32,64", help="IVF lists probed, comma list.")
    parser.add_argument("--ef-search", default="64,128,256", help="HNSW efSearch, comma list.")
    args = parser.parse_args()
    settings = {
        "ivf": [int(v) for v in args.nprobe.split(",")],
        "hnsw": [int(v) for v in args.ef_search.split(",")],
        "flat": [0],
    }

    import faiss

    from index.dense import build_dense, search_dense

    real = _real_vectors(Path(args.index))
    vectors = _synthetic(real, args.n, args.noise, seed=0)
    queries = _synthetic(real, args.queries, args.noise, seed=1)
    ids = np.arange(args.n, dtype=np.int64)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    exact = build_dense(vectors, ids, "flat")
    _, truth = search_dense(exact, queries, 10)
    del exact
    print(
        f"{args.n} vectors (perturbed copies of {len(real)} real passage vectors, noise "
        f"{args.noise}), {args.queries} queries, dim {vectors.shape[1]}"
    )
    print(
        f"{'kind':<6}{'setting':>14}{'build s':>9}{'recall@10':>11}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'bytes/passage':>15}"
    )
    for kind in args.kinds.split(","):
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        started = time.perf_counter()
        index = build_dense(vectors, ids, kind)
        build = time.perf_counter() - started
        size = faiss.serialize_index(index).nbytes
        faiss.omp_set_num_threads(1)
        for value in settings[kind]:
            setting = _apply(index, kind, value)
            samples, found = [], []
            for query in queries:
                t = time.perf_counter()
                _, hit = search_dense(index, query[None, :], 10)
                samples.append(time.perf_counter() - t)
                found.append(hit[0])
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
            p50, p99 = np.percentile(np.asarray(samples) * 1000, [50, 99])
            print(
                f"{kind:<6}{setting:>14}{build:>9.1f}{recall:>11.3f}{p50:>9.2f}{p99:>9.2f}"
                f"{size / args.n:>15.0f}",
                flush=True,
            )
        del index


def _apply(index, kind: str, value: int) -> str:  # noqa: ANN001
    """Set the search-time knob of a built index (inside its IDMap); return it as text."""
    import faiss

    inner = faiss.downcast_index(index.index)
    if kind == "ivf":
        inner.nprobe = value
        return f"nprobe {value}/{inner.nlist}"
    if kind == "hnsw":
        inner.hnsw.efSearch = value
        return f"efSearch {value}"
    return "exact"


if __name__ == "__main__":
    main()
