from index.fusion import reciprocal_rank_fusion
from index.search import highlight
from nlp.paragraphs import split_passages
from nlp.reader import read_document
from nlp.segment import lexical_terms, query_terms, section_tokens, segment_texts, token_terms


def test_folded_query_terms_meet_passage_terms(report_path):
    passages = split_passages(read_document(report_path))
    [tokens] = segment_texts([p.text for p in passages if "151 đảng viên" in p.text])
    terms = set(lexical_terms(tokens))
    words = {"kỷ_luật", "đảng_viên", "kỷ", "luật", "đảng", "viên"}
    assert words <= set(query_terms("kỷ luật đảng viên")) and words <= terms
    assert {"ky_luat", "dang_vien", "ky", "luat"} <= set(query_terms("ky luat dang vien"))
    assert {"ky_luat", "dang_vien"} <= terms


def _report_terms(report_path, phrase: str) -> set[str]:
    passages = split_passages(read_document(report_path))
    tokens = segment_texts([p.text for p in passages if phrase in p.text])
    return {term for passage in tokens for term in lexical_terms(passage)}


def test_a_syllable_inside_a_compound_word_is_a_term(report_path):
    terms = _report_terms(report_path, "đối thoại")  # segmented as one word, đối_thoại
    assert "đối_thoại" in terms
    assert set(query_terms("thoại")) <= terms
    assert {"chấn_hưng", "văn_hoá"} <= set(query_terms("chấn hưng văn hoá"))  # any segmentation


def test_hyphenated_names_and_grouped_numbers_match_whole_and_by_parts(report_path):
    terms = _report_terms(report_path, "Covid-19")
    assert {"covid-19", "covid", "19"} <= terms
    assert "covid-19" in query_terms("COVID-19") and set(query_terms("covid")) <= terms
    numbers = _report_terms(report_path, "25.527 suất quà")
    assert "25.527" in numbers and "25.527" in query_terms("25.527")
    marked = highlight("phòng chống dịch Covid-19; tặng 25.527 suất quà", "covid 25.527")
    assert "<mark>Covid-19</mark>" in marked and "<mark>25.527</mark>" in marked


def test_rrf_orders_by_weighted_reciprocal_rank():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], [1.0, 0.5], rrf_k=1)
    assert [rowid for rowid, _ in fused] == [1, 3, 2]
    assert fused[0][1] == 1 / 2 + 0.5 / 3


def test_highlight_marks_accent_folded_matches_and_escapes(report_path):
    text = "thi hành kỷ luật 151 đảng viên <b> (khiển trách 117 đảng viên)"
    marked = highlight(text, "ky luat dang vien")
    assert "<mark>kỷ</mark> <mark>luật</mark>" in marked
    assert "&lt;b&gt;" in marked
    assert "<mark>luật</mark>" not in highlight(text, "lực lượng")


def test_score_fusion_sums_min_max_normalised_scores():
    import numpy as np

    from index.fusion import score_fusion

    lexical = (np.array([1, 2, 3]), np.array([30.0, 20.0, 10.0]))
    dense = (np.array([3, 4]), np.array([0.9, 0.8]))
    fused = dict(score_fusion([lexical, dense], [0.3, 0.7]))
    assert fused == {1: 0.3, 2: 0.15, 3: 0.7, 4: 0.0}


def test_an_article_heading_gives_its_passages_the_term_of_its_label():
    section = "Chương I. NHỮNG QUY ĐỊNH CHUNG > Điều 5. Nguyên tắc hoà giải ở cơ sở"
    [token] = section_tokens(section)
    assert "điều_5" in token_terms(token) and "điều_5" in query_terms("Điều 5")
    assert section_tokens("I. KẾT QUẢ THỰC HIỆN NHIỆM VỤ > 3. Công tác kiểm tra") == []
