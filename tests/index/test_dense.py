import numpy as np
import pytest

from index.dense import build_dense, resolve_kind, search_dense
from nlp.errors import InvalidInputError


def _vectors(n, dim=384, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _brute_force(vectors, ids, queries, k, allowed=None):
    scores = queries @ vectors.T
    if allowed is not None:
        scores[:, ~np.isin(ids, allowed)] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


def test_flat_index_equals_numpy_brute_force():
    vectors, queries = _vectors(2000), _vectors(20, seed=1)
    ids = np.arange(10, 2010, dtype=np.int64)
    index = build_dense(vectors, ids, "flat")
    scores, found = search_dense(index, queries, 10)
    ref_scores, ref_ids = _brute_force(vectors, ids, queries, 10)
    np.testing.assert_array_equal(found, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


def test_filtered_flat_search_equals_brute_force():
    vectors, queries = _vectors(500), _vectors(5, seed=2)
    ids = np.arange(500, dtype=np.int64)
    allowed = ids[::7]
    index = build_dense(vectors, ids, "flat")
    _, found = search_dense(index, queries, 5, allowed)
    _, ref_ids = _brute_force(vectors, ids, queries, 5, allowed)
    np.testing.assert_array_equal(found, ref_ids)


def _recall(found, exact, k):
    return np.mean([len(set(a) & set(b)) / k for a, b in zip(found, exact, strict=True)])


def _clustered(n, seed):
    # Embeddings of real text cluster by topic; uniform random vectors would not.
    rng = np.random.default_rng(seed)
    centres = _vectors(40, seed=seed)[rng.integers(0, 40, n)]
    v = centres + 0.08 * rng.standard_normal(centres.shape).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_find_most_exact_neighbours(kind):
    vectors, queries = _clustered(3000, 3), _clustered(30, 3)
    ids = np.arange(3000, dtype=np.int64)
    _, exact = _brute_force(vectors, ids, queries, 10)
    _, found = search_dense(build_dense(vectors, ids, kind), queries, 10)
    assert _recall(found, exact, 10) >= 0.8


@pytest.mark.parametrize("kind", ["sq8", "fastscan"])
def test_filtered_quantised_search_with_fewer_allowed_than_candidates_is_exact(kind):
    vectors, queries = _vectors(300), _vectors(3, seed=6)
    ids = np.arange(1, 301, dtype=np.int64)
    allowed = np.array([5, 7, 9, 120], dtype=np.int64)
    scores, found = search_dense(build_dense(vectors, ids, kind), queries, 10, allowed)
    ref_scores, ref_ids = _brute_force(vectors, ids, queries, 4, allowed)
    np.testing.assert_array_equal(found[:, :4], ref_ids)
    assert (found[:, 4:] == -1).all()
    np.testing.assert_allclose(scores[:, :4], ref_scores, atol=1e-5)


@pytest.mark.parametrize("kind", ["sq8", "fastscan"])
def test_quantised_scans_return_exact_scores_of_nearly_every_exact_neighbour(kind):
    vectors, queries = _clustered(3000, 5), _clustered(30, 5)
    ids = np.arange(3000, dtype=np.int64)
    ref_scores, exact = _brute_force(vectors, ids, queries, 50)
    scores, found = search_dense(build_dense(vectors, ids, kind), queries, 50)
    assert _recall(found, exact, 50) >= 0.99
    # The candidates are rescored against the float vectors: exact inner products.
    np.testing.assert_allclose(scores, np.sum(vectors[found] * queries[:, None], axis=2), atol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "sq8", "fastscan"])
def test_filtered_approximate_search_keeps_to_the_allowed_ids(kind):
    vectors, queries = _clustered(3000, 4), _clustered(20, 4)
    ids = np.arange(3000, dtype=np.int64)
    allowed = ids[::3]
    _, exact = _brute_force(vectors, ids, queries, 10, allowed)
    _, found = search_dense(build_dense(vectors, ids, kind), queries, 10, allowed)
    assert set(found[found >= 0].tolist()) <= set(allowed.tolist())
    assert _recall(found, exact, 10) >= 0.8


def test_auto_kind_switches_with_size_and_rejects_unknown():
    assert resolve_kind("auto", 1000) == "fastscan"
    assert resolve_kind("auto", 10**6) == "ivf"
    with pytest.raises(InvalidInputError, match="flat"):
        resolve_kind("annoy", 10)


@pytest.mark.parametrize("n", [1, 2, 17])
def test_a_fastscan_index_of_a_tiny_collection_finds_every_vector(n):
    # k-means on too few points gave NaN codes and no results before the training set was
    # topped up.
    vectors = _vectors(n, seed=8)
    ids = np.arange(100, 100 + n, dtype=np.int64)
    scores, found = search_dense(build_dense(vectors, ids, "fastscan"), vectors, n)
    assert (found[:, 0] == ids).all()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert set(found[0].tolist()) == set(ids.tolist())


def test_k_larger_than_collection_is_clamped():
    vectors = _vectors(3)
    index = build_dense(vectors, np.arange(3), "flat")
    scores, ids = search_dense(index, vectors[:1], 50)
    assert ids.shape == (1, 3) and ids[0, 0] == 0


def test_searches_from_any_thread_use_the_configured_openmp_threads(tmp_path):
    import threading

    import faiss

    from index.dense import load_dense, save_dense

    vectors = _vectors(200)
    save_dense(build_dense(vectors, np.arange(200, dtype=np.int64), "flat"), tmp_path / "d.faiss")
    index = load_dense(tmp_path / "d.faiss", query_threads=1)
    seen = []

    def search() -> None:  # a server's pool thread: OpenMP settings are per thread
        search_dense(index, vectors[:1], 5)
        seen.append(faiss.omp_get_max_threads())

    thread = threading.Thread(target=search)
    thread.start()
    thread.join()
    assert seen == [1]
