"""Query latency: query embedding alone, each search leg, bm25s alone, and hybrid over HTTP.

Usage: python -m eval.bench_query --index DIR [--queries FILE.jsonl] [--repeat 3]

Prints p50/p99 in milliseconds for every step, measured in the same run on the same queries,
and the ratio of hybrid-over-HTTP p50/p99 to query-embedding p50/p99 (issue target: ≤ 1.3× and
≤ 2×), twice: against this project's query embedder (the int8 ONNX model by default) and
against the issue's baseline, raw fp32 sentence-transformers `encode` of one query with the
same model (`--baseline-model`, default the rebuilt multilingual-e5-small; `none` skips it).
The HTTP figures come from a real `vnsearch serve` process on 127.0.0.1, asked one query at a
time over a kept-alive connection; its resident memory (now and peak, from its
/stats) is printed after the run.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _percentiles(samples: list[float]) -> tuple[float, float]:
    array = np.asarray(samples) * 1000
    return float(np.percentile(array, 50)), float(np.percentile(array, 99))


def _time(fn, items, repeat):  # noqa: ANN001, ANN202
    samples = []
    for _ in range(repeat):
        for item in items:
            started = time.perf_counter()
            fn(item)
            samples.append(time.perf_counter() - started)
    return samples


def _raw_query_baseline(model_name: str, queries: list[str], repeat: int) -> list[float]:
    """Time raw fp32 sentence-transformers `encode` of one query at a time (the issue's
    "query embedding: about 30 ms on CPU"), on the CPU, with the model's query prompt."""
    import torch
    from sentence_transformers import SentenceTransformer

    from models.e5_build import build_e5_small

    model = SentenceTransformer(model_name or str(build_e5_small()), device="cpu")
    prompt = "query" if "query" in model.prompts else None

    def encode(query: str) -> np.ndarray:
        return model.encode([query], prompt_name=prompt, normalize_embeddings=True)

    with torch.inference_mode():
        for q in queries[:5]:
            encode(q)
        return _time(encode, queries, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--queries", default="eval/queries/search-eval.jsonl")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", default="auto", help="Query embedder backend.")
    parser.add_argument(
        "--baseline-model",
        default="",
        help="sentence-transformers model for the raw fp32 query baseline (default: the "
        "rebuilt multilingual-e5-small; 'none' skips the baseline).",
    )
    args = parser.parse_args()

    import bm25s
    import httpx

    from api.loading import load_embedder
    from eval.load_test import serving
    from eval.search import load_queries
    from index.search import Searcher
    from nlp.segment import query_terms

    queries = [q.query for q in load_queries(args.queries)]
    embedder = load_embedder(backend=args.backend)
    searcher = Searcher(args.index, embedder)
    lexical = searcher._lexical  # the same bm25s object, for the side-by-side
    terms = {q: query_terms(q) for q in queries}
    for q in queries[:5]:  # warm up every path
        searcher.search(q)

    rows = {}
    rows["query embedding"] = _time(lambda q: embedder.embed_queries([q]), queries, args.repeat)
    if args.baseline_model != "none":
        rows["raw ST fp32 query (base)"] = _raw_query_baseline(
            args.baseline_model, queries, args.repeat
        )
    rows["lexical leg (vnsearch)"] = _time(
        lambda q: lexical.search(terms[q], 100), queries, args.repeat
    )
    rows["bm25s retrieve alone"] = _time(
        lambda q: lexical._retriever.retrieve([terms[q]], k=100, show_progress=False, n_threads=1),
        queries,
        args.repeat,
    )
    rows["search lexical"] = _time(
        lambda q: searcher.search(q, mode="lexical"), queries, args.repeat
    )
    rows["search dense"] = _time(lambda q: searcher.search(q, mode="dense"), queries, args.repeat)
    rows["search hybrid"] = _time(lambda q: searcher.search(q), queries, args.repeat)
    with serving(args.index) as url, httpx.Client(base_url=url, timeout=60) as client:
        for q in queries[:5]:
            client.get("/search", params={"q": q}).raise_for_status()
        rows["HTTP /search hybrid"] = _time(
            lambda q: client.get("/search", params={"q": q}).raise_for_status(),
            queries,
            args.repeat,
        )
        memory = client.get("/stats").json()["memory"]
    del bm25s
    print(
        f"index {args.index}: {searcher.manifest.passages} passages; {len(queries)} queries x "
        f"{args.repeat}; embedder {embedder.name} ({embedder.backend}, "
        f"max {embedder.max_length} tokens)"
    )
    print(f"{'step':<26}{'p50 ms':>10}{'p99 ms':>10}")
    for name, samples in rows.items():
        p50, p99 = _percentiles(samples)
        print(f"{name:<26}{p50:>10.2f}{p99:>10.2f}")
    h50, h99 = _percentiles(rows["HTTP /search hybrid"])
    for name, label in (
        ("query embedding", "this project's query embedding"),
        ("raw ST fp32 query (base)", "raw fp32 sentence-transformers query embedding"),
    ):
        if name in rows:
            e50, e99 = _percentiles(rows[name])
            print(f"hybrid-over-HTTP / {label}: p50 {h50 / e50:.2f}x, p99 {h99 / e99:.2f}x")
    print(
        f"service memory after the run: RSS {memory['rss_bytes'] / 2**30:.2f} GiB, "
        f"peak {memory['peak_rss_bytes'] / 2**30:.2f} GiB"
    )


if __name__ == "__main__":
    main()
