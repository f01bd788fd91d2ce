import unicodedata

import pytest

from nlp.normalize import fold_accents, has_diacritics, normalize_text
from nlp.reader import read_document


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("hòa", "hoà"),
        ("thủy", "thuỷ"),
        ("khỏe", "khoẻ"),
        ("Hòa bình", "Hoà bình"),
        ("ỦY BAN", "UỶ BAN"),
    ],
)
def test_both_tone_mark_styles_normalise_identically(old, new):
    assert normalize_text(old) == normalize_text(new)


def test_qu_syllables_are_not_damaged():
    assert normalize_text("quý, quỳnh, quà") == "quý, quỳnh, quà"
    assert normalize_text("hoàng thuyền") == "hoàng thuyền"


def test_nfd_real_paragraph_equals_nfc(report_path):
    text = read_document(report_path).text
    nfd = unicodedata.normalize("NFD", text)
    assert nfd != text
    assert normalize_text(nfd, keep_newlines=True) == text


def test_zero_width_control_and_spaces_are_cleaned():
    raw = "Công tác\u200b dân\u00a0vận\t\t được\x07 cấp uỷ\ufeff quan tâm"
    assert normalize_text(raw) == "Công tác dân vận được cấp uỷ quan tâm"


def test_accent_folding():
    assert fold_accents("kỷ luật đảng viên") == "ky luat dang vien"
    assert fold_accents("ĐẢNG VIÊN") == "dang vien"
    assert fold_accents(unicodedata.normalize("NFD", "Đoàn Thanh niên")) == "doan thanh nien"


def test_has_diacritics():
    assert has_diacritics("kỷ luật")
    assert not has_diacritics("ky luat dang vien 151")


@pytest.mark.parametrize("text", ["", "   ", "\u200b\u200b", "...!?"])
def test_golden_edge_cases(text):
    assert normalize_text(text) == text.strip(" \u200b")


def test_eth_look_alike_becomes_d_with_stroke():
    assert normalize_text("Ðảng uỷ") == "Đảng uỷ"
    assert fold_accents(normalize_text("Ðảng")) == "dang"
