"""Dense retrieval with FAISS: inner product on L2-normalised vectors, exact or approximate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nlp.errors import InvalidInputError

DENSE_KINDS = ("auto", "flat", "fastscan", "sq8", "hnsw", "ivf")
# From this many vectors "auto" switches from exact search to IVF: at 1M vectors IVF builds in
# 46 s on 2 cores (HNSW took over 24 minutes, and every index update rebuilds the dense index)
# and keeps Recall@10 0.966 at p50 8 ms with nprobe = nlist/32 (eval/bench_scale.py).
AUTO_APPROXIMATE_FROM = 200_000
IVF_PROBE_FRACTION = 32  # nprobe = nlist / 32
# "fastscan": a 4-bit code per dimension (product quantisation with one dimension per
# sub-quantiser, FAISS's SIMD "fast scan" layout, 192 bytes a passage at 384 dimensions) picks
# this many times k candidates, which are then scored exactly against the float vectors. Over
# the whole corpus (83,329 passages, the 79 evaluation queries, k 100, a query embedded before
# each search as a server does) it took 1.26 ms against 5.27 for "sq8" and 9.64 for exact
# search, with Recall@10 1.0 and Recall@100 1.0 against exact search (a one-off script).
FASTSCAN_CANDIDATES = 8
FASTSCAN_BITS = 4
FASTSCAN_SAMPLE = 16_384  # vectors whose quantiles make the codebook (`_quantile_codes`)
# "sq8": an 8-bit scan picks this many times k candidates, which are then scored exactly
# against the float vectors. Over the whole corpus (83,329 passages, the 79 evaluation
# queries, k 100) it returned the exact top 100 every time, in 3.2 ms instead of 7.2 ms.
SQ8_CANDIDATES = 2
HNSW_M = 32
HNSW_EF_SEARCH = 128


def resolve_kind(kind: str, n: int) -> str:
    """Return the concrete index kind for `kind` and a collection of `n` vectors.

    Raises:
        InvalidInputError: `kind` is not one of DENSE_KINDS.
    """
    if kind not in DENSE_KINDS:
        raise InvalidInputError(f"unknown dense index kind {kind!r}; use one of {DENSE_KINDS}")
    if kind == "auto":
        return "ivf" if n >= AUTO_APPROXIMATE_FROM else "fastscan"
    return kind


def build_dense(vectors: np.ndarray, ids: np.ndarray, kind: str = "flat"):  # noqa: ANN201
    """Build a FAISS index over `vectors` whose search returns `ids`.

    Args:
        vectors: float32 (n, dim), L2-normalised.
        ids: int64 (n,) passage row ids.
        kind: "flat" (exact), "fastscan" (a 4-bit scan rescored exactly: exact scores, about
            7 times as fast, 12.5% more memory), "sq8" (an 8-bit scan rescored exactly, about
            twice as fast, 25% more memory), "hnsw" or "ivf" (approximate, for large
            collections).

    Returns:
        A `faiss.Index` (an IndexIDMap2 around the chosen index).
    """
    import faiss  # lazy: only index building and search need it

    dim = vectors.shape[1]
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = 80
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind == "ivf":
        nlist = max(1, min(4096, int(4 * np.sqrt(len(vectors)))))
        quantizer = faiss.IndexFlatIP(dim)
        inner = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        inner.train(vectors[np.random.default_rng(0).permutation(len(vectors))[: nlist * 64]])
        inner.nprobe = min(nlist, max(16, nlist // IVF_PROBE_FRACTION))
    elif kind == "fastscan":
        scan = faiss.IndexPQFastScan(dim, dim, FASTSCAN_BITS, faiss.METRIC_INNER_PRODUCT)
        if len(vectors):
            _quantile_codes(scan, vectors)
        inner = faiss.IndexRefineFlat(scan)
        inner.k_factor = FASTSCAN_CANDIDATES
    elif kind == "sq8":
        scan = faiss.IndexScalarQuantizer(
            dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        if len(vectors):
            scan.train(np.ascontiguousarray(vectors, dtype=np.float32))
        inner = faiss.IndexRefineFlat(scan)
        inner.k_factor = SQ8_CANDIDATES
    else:
        inner = faiss.IndexFlatIP(dim)
    index = faiss.IndexIDMap2(inner)
    if len(vectors):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    return index


def _quantile_codes(scan, vectors: np.ndarray) -> None:  # noqa: ANN001
    """Give a fast-scan index with one dimension per sub-quantiser its codebook: the
    quantiles of each dimension over a sample, at the centres of equal-count bins.

    With one dimension per sub-quantiser, FAISS's training is a 1-D k-means per dimension: 2.3
    to 2.9 s at any collection size (0.8 s at 1,000 vectors, 13 s at 5,000 on a busy machine),
    and every index update rebuilds the dense index. Quantiles take milliseconds and gave the
    same search: over the whole corpus and 300 perturbed passage vectors as queries, Recall@10
    1.0 and Recall@100 0.9996 against 1.0 for k-means (a one-off script).
    """
    import faiss

    sample = np.asarray(vectors, dtype=np.float32)
    if len(sample) > FASTSCAN_SAMPLE:
        sample = sample[np.random.default_rng(0).choice(len(sample), FASTSCAN_SAMPLE, False)]
    levels = 2**FASTSCAN_BITS
    centres = np.quantile(sample, (np.arange(levels) + 0.5) / levels, axis=0).T  # (dim, levels)
    # Equal centres (one vector, or a constant dimension) made FAISS's search return nothing.
    centres += np.linspace(-1e-4, 1e-4, levels)
    faiss.copy_array_to_vector(
        np.ascontiguousarray(centres, dtype=np.float32).ravel(), scan.pq.centroids
    )
    scan.is_trained = True


def save_dense(index, path: Path) -> None:  # noqa: ANN001
    """Write a FAISS index to `path`."""
    import faiss

    faiss.write_index(index, str(path))


# OpenMP threads per search, set by `load_dense`. OpenMP keeps the setting per thread, so
# `search_dense` applies it in the calling thread: a web server searches from its pool threads.
_query_threads: int | None = None


def load_dense(path: Path, query_threads: int | None = 1):  # noqa: ANN201
    """Read a FAISS index written by `save_dense` for searching.

    Args:
        path: The index file.
        query_threads: OpenMP threads for searches (None leaves FAISS's default). One query
            over an exact index takes about 3 ms on one thread; OpenMP's spinning threads made
            it 57 ms on a busy 2-core machine (measured), so a serving process uses one.
    """
    import faiss

    global _query_threads
    _query_threads = query_threads
    return faiss.read_index(str(path))


def search_dense(
    index,  # noqa: ANN001
    queries: np.ndarray,
    k: int,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (scores, ids) of the `k` nearest vectors per query, best first; id -1 pads.

    Args:
        index: A FAISS index from `build_dense`.
        queries: float32 (q, dim), L2-normalised.
        k: Neighbours per query.
        allowed: Optional passage row ids the results must come from (filters).
    """
    import faiss

    if _query_threads is not None and faiss.omp_get_max_threads() != _query_threads:
        faiss.omp_set_num_threads(_query_threads)  # 1.6 ms instead of 21 ms per exact search
    k = max(1, min(k, index.ntotal)) if index.ntotal else 1
    if index.ntotal == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    params = None
    if allowed is not None:
        inner = _inner_index(index)
        if isinstance(inner, faiss.IndexRefine):
            return _filtered_refine_search(index, inner, queries, k, allowed)
        selector = faiss.IDSelectorBatch(allowed.astype(np.int64))
        params = _filtered_params(index, selector)
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
    return scores, ids


def _filtered_refine_search(
    index,  # noqa: ANN001
    refine,  # noqa: ANN001
    queries: np.ndarray,
    k: int,
    allowed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """A filtered search of a "fastscan" or "sq8" index: exact, over its float vectors.

    FAISS's refine index does not pass an ID selector from the id map down to its quantised scan
    (it searched unfiltered, or filtered on the wrong ids), so the allowed rows are searched
    directly in the exact index inside it, by internal position.
    """
    import faiss

    id_map = faiss.vector_to_array(index.id_map)
    positions = np.flatnonzero(np.isin(id_map, allowed))
    exact = faiss.downcast_index(refine.refine_index)
    params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(positions.astype(np.int64)))
    scores, found = exact.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
    return scores, np.where(found >= 0, id_map[np.maximum(found, 0)], -1)


def _filtered_params(index, selector):  # noqa: ANN001, ANN202
    """Search parameters that carry `selector`, of the class the inner index demands (IVF and
    HNSW refuse the generic one), keeping its configured nprobe or efSearch."""
    import faiss

    inner = _inner_index(index)
    if isinstance(inner, faiss.IndexIVF):
        return faiss.SearchParametersIVF(sel=selector, nprobe=inner.nprobe)
    if isinstance(inner, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=inner.hnsw.efSearch)
    return faiss.SearchParameters(sel=selector)


def _inner_index(index):  # noqa: ANN001, ANN202
    """The index inside the id map (`build_dense` wraps every kind in one), as its own class."""
    import faiss

    return faiss.downcast_index(index.index) if hasattr(index, "index") else index
