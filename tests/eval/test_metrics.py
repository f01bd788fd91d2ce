import math

import pytest

from eval.metrics import mrr_at_k, ndcg_at_k, recall_at_k


def test_ndcg_hand_computed():
    grades = {"a": 2, "b": 1}
    dcg = 0 + (2**2 - 1) / math.log2(3) + (2**1 - 1) / math.log2(4)
    ideal = (2**2 - 1) / math.log2(2) + (2**1 - 1) / math.log2(3)
    assert ndcg_at_k(["x", "a", "b"], grades, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(["a", "b"], grades) == pytest.approx(1.0)
    assert ndcg_at_k(["x"], {}) == 0.0


def test_mrr_and_recall():
    grades = {"a": 2, "b": 1, "c": 1}
    assert mrr_at_k(["x", "y", "b"], grades) == pytest.approx(1 / 3)
    assert mrr_at_k(["x"] * 10 + ["a"], grades, 10) == 0.0
    assert recall_at_k(["a", "x", "c"], grades, 2) == pytest.approx(1 / 3)
    assert recall_at_k(["a", "x", "c"], grades, 3) == pytest.approx(2 / 3)
