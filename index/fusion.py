"""Fusing ranked lists from the dense and lexical legs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Sequence[np.ndarray],
    weights: Sequence[float],
    rrf_k: float = DEFAULT_RRF_K,
) -> list[tuple[int, float]]:
    """Fuse ranked id lists by weighted reciprocal rank: sum of w / (rrf_k + rank).

    Args:
        rankings: Row ids per leg, best first (ids < 0 are padding and ignored).
        weights: One weight per leg.
        rrf_k: The RRF constant; larger flattens the rank curve.

    Returns:
        (row id, fused score) pairs, best first; ties keep the first leg's order.
    """
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, rowid in enumerate(ranking, start=1):
            if rowid >= 0 and weight:
                scores[int(rowid)] = scores.get(int(rowid), 0.0) + weight / (rrf_k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


def score_fusion(
    legs: Sequence[tuple[np.ndarray, np.ndarray]],
    weights: Sequence[float],
) -> list[tuple[int, float]]:
    """Fuse legs by a weighted sum of their min-max normalised scores.

    Each leg's scores are scaled to [0, 1] over its own candidates, so BM25's unbounded scores
    and cosine similarities become comparable; a passage missing from a leg gets 0 there.

    Args:
        legs: (row ids, scores) per leg, best first.
        weights: One weight per leg.

    Returns:
        (row id, fused score) pairs, best first.
    """
    fused: dict[int, float] = {}
    for (ids, scores), weight in zip(legs, weights, strict=True):
        keep = ids >= 0
        ids, scores = ids[keep], np.asarray(scores, dtype=np.float64)[keep]
        if not len(ids) or not weight:
            continue
        span = scores.max() - scores.min()
        scaled = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
        for rowid, value in zip(ids.tolist(), scaled.tolist(), strict=True):
            fused[rowid] = fused.get(rowid, 0.0) + weight * value
    return sorted(fused.items(), key=lambda item: -item[1])
