"""Evaluate search modes on a query set whose answers are given as (document, substring)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from nlp.errors import InvalidInputError

RECALL_CUTOFFS = (10, 50)


@dataclass(frozen=True)
class EvalQuery:
    """A query and its judged passages: (document path suffix, text substring) -> grade."""

    id: str
    query: str
    relevant: tuple[tuple[str, str, int], ...]


def load_queries(path: str | Path) -> list[EvalQuery]:
    """Read a query set (JSON Lines: id, query, relevant[{doc, contains, grade}]).

    Raises:
        InvalidInputError: A line is not of that form; the message names the line.
    """
    queries = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            relevant = tuple(
                (r["doc"], r["contains"], int(r.get("grade", 1))) for r in row["relevant"]
            )
            queries.append(EvalQuery(str(row.get("id", number)), str(row["query"]), relevant))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(
                f"{path} line {number}: expected {{query, relevant: [{{doc, contains, grade}}]}} "
                f"({exc})"
            ) from None
    return queries


def evaluate_search(
    searcher,  # noqa: ANN001 - index.search.Searcher
    queries: Sequence[EvalQuery],
    modes: Sequence[str] = ("lexical", "dense", "hybrid"),
    k: int = 10,
) -> dict:
    """Compute nDCG@k, MRR@k and Recall@{10,50} per mode, averaged over queries.

    Judged passages that are not in the index are reported and left out of the judgements;
    queries with no judged passage in the index are skipped (and counted). A passage is judged
    by its text: a copy of a judged paragraph in another document (a regulation quoted in a
    guide) is the same answer, and the search shows only the best-ranked copy.

    Returns:
        {"modes": {mode: {metric: value}}, "queries": n used, "skipped": [...],
         "unresolved": [...], "per_query": {mode: {id: {metric: value}}}}
    """
    judged: dict[str, dict[str, int]] = {}
    unresolved = []
    for query in queries:
        grades: dict[str, int] = {}
        for doc, contains, grade in query.relevant:
            found = searcher.find_passages(doc, contains)
            if not found:
                unresolved.append({"id": query.id, "doc": doc, "contains": contains})
            for text in found:
                grades[text] = max(grade, grades.get(text, 0))
        judged[query.id] = grades
    used = [q for q in queries if judged[q.id]]
    depth = max((k, *RECALL_CUTOFFS))
    report: dict = {"modes": {}, "per_query": {}, "queries": len(used)}
    report["skipped"] = [q.id for q in queries if not judged[q.id]]
    report["unresolved"] = unresolved
    for mode in modes:
        results = searcher.batch_search([q.query for q in used], k=depth, mode=mode)
        rows = {}
        for query, result in zip(used, results, strict=True):
            ranked = list(dict.fromkeys(hit.text for hit in result.hits))
            grades = judged[query.id]
            rows[query.id] = {
                f"ndcg@{k}": ndcg_at_k(ranked, grades, k),
                f"mrr@{k}": mrr_at_k(ranked, grades, k),
                **{f"recall@{c}": recall_at_k(ranked, grades, c) for c in RECALL_CUTOFFS},
            }
        metrics = next(iter(rows.values())).keys() if rows else []
        report["modes"][mode] = {m: sum(r[m] for r in rows.values()) / len(rows) for m in metrics}
        report["per_query"][mode] = rows
    return report
