import bm25s
import numpy as np

from index.lexical import BM25_B, BM25_K1, NO_TERMS, LexicalIndex
from nlp.paragraphs import split_passages
from nlp.reader import read_document
from nlp.segment import lexical_terms, query_terms, segment_texts, token_terms


def _column(retriever, term: str) -> tuple[np.ndarray, np.ndarray]:
    scores, column = retriever.scores, retriever.vocab_dict[term]
    start, end = scores["indptr"][column], scores["indptr"][column + 1]
    return scores["indices"][start:end], scores["data"][start:end]


def test_building_from_tokens_gives_bm25s_own_columns(report_path):
    passages = split_passages(read_document(report_path))
    tokens = [*segment_texts([p.text for p in passages]), []]  # and a passage without words
    rowids = np.arange(len(tokens), dtype=np.int64) + 7
    ours = LexicalIndex.build_from_tokens(tokens, rowids, token_terms)
    reference = bm25s.BM25(k1=BM25_K1, b=BM25_B)
    reference.index([lexical_terms(t) or [NO_TERMS] for t in tokens], show_progress=False)
    terms = [term for term in reference.vocab_dict if term]  # "" is bm25s's own, columnless
    assert sorted(terms) == sorted(t for t in ours._retriever.vocab_dict if t)
    for term in terms:
        expected_rows, expected_scores = _column(reference, term)
        rows, scores = _column(ours._retriever, term)
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_array_equal(scores, expected_scores)
    theirs = LexicalIndex(reference, rowids)
    for query in ("ky luat dang vien", "kỷ luật đảng viên", "công tác dân vận", "xyzzy"):
        got, expected = ours.search(query_terms(query), 20), theirs.search(query_terms(query), 20)
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_array_equal(got[0], expected[0])
    assert len(ours.search(query_terms("ky luat dang vien"), 20)[1]) == 20
