import pytest

from nlp.paragraphs import split_passages
from nlp.reader import RawDocument, read_document

INSPECTION = "I. KẾT QUẢ THỰC HIỆN NHIỆM VỤ CÔNG TÁC XÂY DỰNG ĐẢNG > " + (
    "3. Công tác kiểm tra, giám sát và thi hành kỷ luật Đảng"
)


def _report(report_path):
    return split_passages(read_document(report_path))


def test_discipline_paragraph_sits_under_the_inspection_heading(report_path):
    passages = _report(report_path)
    [hit] = [p for p in passages if "thi hành kỷ luật 151 đảng viên" in p.text]
    assert hit.section == INSPECTION
    assert hit.paragraph == passages.index(hit) + 1


def test_page_break_paragraphs_are_joined(report_path):
    texts = [p.text for p in _report(report_path)]
    assert any("Ngày Bác Hồ về thăm tỉnh Hải Dương" in t for t in texts)
    assert any("thực hiện nghiêm các chủ trương của Đảng, chính sách" in t for t in texts)
    assert not any(t.startswith("thăm tỉnh") or t.startswith("của Đảng, chính sách") for t in texts)


def test_long_numbered_line_is_content_not_heading(report_path):
    passages = _report(report_path)
    [task] = [p for p in passages if p.text.startswith("1. Chỉ đạo sơ, tổng kết")]
    assert task.section == "IV. NHIỆM VỤ TRỌNG TÂM 6 THÁNG CUỐI NĂM 2022"


def test_headings_recipients_and_signature_are_not_passages(report_path):
    texts = [p.text for p in _report(report_path)]
    assert not any(t.startswith("3. Công tác kiểm tra") for t in texts)
    assert not any("Nơi nhận" in t or "Lưu Văn phòng" in t or "Lê Văn Hiệu" in t for t in texts)


def test_offsets_point_into_the_document(report_path):
    document = read_document(report_path)
    for passage in split_passages(document):
        head = passage.text.split()[0]
        assert document.text[passage.start : passage.end].startswith(head)


def test_law_articles_give_chapter_and_article_sections(corpus_dir):
    law = read_document(corpus_dir / "laws" / "Luat-Bao-chi-2016-280645.txt")
    passages = split_passages(law)
    first = next(
        p for p in passages if p.text.startswith("Luật này quy định về quyền tự do báo chí")
    )
    assert first.section == "Chương I. NHỮNG QUY ĐỊNH CHUNG > Điều 1. Phạm vi Điều chỉnh"


def test_markdown_headings_become_sections(corpus_dir):
    doc = read_document(corpus_dir / "party" / "000108d9c88b8855.md")
    passages = split_passages(doc)
    assert passages[0].title == "Việt Nam Cách mệnh Đồng minh Hội"
    assert any(p.section.endswith("Thành lập") for p in passages)
    assert not any("sửa mã nguồn" in p.text or "**" in p.text for p in passages)


def test_a_bold_only_line_is_a_sub_heading_not_a_passage(corpus_dir):
    doc = read_document(corpus_dir / "party" / "643208162c2d61a3.md")
    question = "Thẩm quyền thi hành kỷ luật đảng viên vi phạm được quy định ra sao?"
    assert f"**{question}**" in doc.text
    passages = split_passages(doc)
    assert not any(p.text == question for p in passages)
    answer = next(p for p in passages if p.text.startswith("Căn cứ theo quy định tại Điều 36"))
    assert answer.section.endswith(question)


def test_a_lead_in_line_joins_the_item_after_it(corpus_dir):
    charter = split_passages(read_document(corpus_dir / "party" / "b5766b5f7caa1268.md"))
    texts = [p.text for p in charter]
    assert "Thẩm quyền thi hành kỷ luật đảng viên vi phạm :" not in texts
    [joined] = [t for t in texts if t.startswith("Thẩm quyền thi hành kỷ luật đảng viên vi phạm")]
    assert "1. Chi bộ quyết định khiển trách, cảnh cáo đảng viên trong chi bộ" in joined
    # the next items stay passages of their own
    assert any(t.startswith("Đảng uỷ cơ sở quyết định khiển trách, cảnh cáo") for t in texts)


def test_empty_document_gives_no_passages():
    assert split_passages(RawDocument(path="x.txt", text="")) == []


def test_a_law_without_a_given_title_is_titled_by_its_type_line_not_its_banner(corpus_dir):
    law = corpus_dir / "laws" / "Luat-Bao-chi-2016-280645.txt"  # "QUỐC HỘI --------" on top
    passages = split_passages(read_document(law))
    assert passages[0].title == "LUẬT BÁO CHÍ"


def test_a_decree_title_joins_its_type_word_and_what_it_rules_on(corpus_dir):
    decree = corpus_dir / "party" / "c22591f10eec1dab.md"  # "NGHỊ ĐỊNH" over "Quy định ..."
    title = split_passages(read_document(decree))[0].title
    assert title.startswith("NGHỊ ĐỊNH Quy định") and "CHÍNH PHỦ" not in title


def test_a_news_item_is_titled_by_its_first_line_not_its_file_name(corpus_dir):
    news = next((corpus_dir / "party").glob("dcsvn-01-*"))
    assert split_passages(read_document(news))[0].title == (
        "Triển lãm ảnh thời sự nghệ thuật “Sắc xuân Trường Sa”"
    )


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("background/rd-normal-01904125.txt", '... ".'),  # the end of a quote
        ("party/rd-difficult-00001576.txt", "1."),  # a list number on its own line
    ],
)
def test_a_line_without_letters_is_not_a_passage(corpus_dir, name, line):
    document = corpus_dir / name
    assert line in [text.strip() for text in document.read_text(encoding="utf-8").splitlines()]
    texts = [p.text for p in split_passages(read_document(document))]
    assert texts and all(any(ch.isalpha() for ch in text) for text in texts)
