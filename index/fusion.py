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
