import pytest

from nlp.errors import IndexError_, InvalidInputError

DISCIPLINE = "thi hành kỷ luật 151 đảng viên"


@pytest.mark.parametrize("mode", ["hybrid", "lexical", "dense"])
def test_discipline_query_finds_the_151_paragraph_in_top_3(searcher, mode):
    result = searcher.search("kỷ luật đảng viên", k=3, mode=mode)
    assert any(DISCIPLINE in hit.text for hit in result.hits)


@pytest.mark.parametrize("query", ["151", "ky luat 151 dang vien", "kỷ luật 151 đảng viên"])
def test_a_number_in_the_query_finds_the_paragraph_that_has_it_first(rival_searcher, query):
    # A number alone is matched exactly: its vector's neighbours had buried it (7th).
    assert DISCIPLINE in rival_searcher.search(query, k=1).hits[0].text


def test_a_heading_word_finds_the_paragraphs_under_it(searcher, small_index):
    from index.store import connect, generation_dir, read_manifest

    # Under "4. Công tác dân vận", a paragraph that never says "dân vận" itself.
    quiet = "Nắm tình hình tư tưởng, tâm trạng, nguyện vọng của các tầng lớp nhân dân"
    hits = searcher.search("công tác dân vận", k=10, mode="lexical").hits
    assert any(hit.text.startswith(quiet) for hit in hits)
    database = generation_dir(small_index, read_manifest(small_index).generation) / "passages.db"
    headings = dict(connect(database).execute("SELECT heading, tokens FROM headings").fetchall())
    assert "dân_vận" in headings["4. Công tác dân vận"].split(" ")  # segmented once, stored


def test_an_article_number_finds_the_paragraphs_of_that_article(searcher):
    # "Điều 2. Các hành vi tham nhũng" is a heading of the anti-corruption law: metadata only.
    law = "*Luat-Phong-chong*"
    lexical = searcher.search("Điều 2", k=3, mode="lexical", doc=law).hits
    assert lexical and all("Điều 2." in hit.section for hit in lexical)
    assert "Điều 2." in searcher.search("Điều 2", k=1, doc=law).hits[0].section


CHARTER = "b5766b5f7caa1268.md"  # the Party Charter: its chapter VIII is on discipline
CHARTER_FAQ = "643208162c2d61a3.md"  # a guide that quotes the charter's article 36
QUOTED = "Bộ Chính trị, Ban Bí thư quyết định các hình thức kỷ luật đảng viên"


@pytest.fixture(scope="module")
def rival_searcher(tmp_path_factory, report_path, corpus_dir, embedder, classifier):
    """The report beside the charter and a guide that quotes it word for word."""
    from index.indexer import index_paths
    from index.search import Searcher

    folder = tmp_path_factory.mktemp("rivals")
    for source in (report_path, corpus_dir / "party" / CHARTER, corpus_dir / "party" / CHARTER_FAQ):
        (folder / source.name).write_bytes(source.read_bytes())
    root = tmp_path_factory.mktemp("rival-index") / "idx"
    index_paths([folder], root, embedder, classifier)
    return Searcher(root, embedder)


def test_a_paragraph_quoted_in_two_documents_is_shown_once(rival_searcher):
    copies = [
        p for doc in (CHARTER, CHARTER_FAQ) for p in rival_searcher.find_passages(doc, QUOTED)
    ]
    assert len(copies) == 2 and copies[0] == copies[1]  # the same paragraph in both files
    hits = rival_searcher.search(QUOTED, k=20).hits
    texts = [hit.text for hit in hits]
    assert texts.count(copies[0]) == 1
    assert len(texts) == len(set(texts))


def test_copies_are_stored_at_index_time_and_read_from_sql_for_older_indexes(rival_searcher):
    from index.store import COPIES_FILE, first_copies, generation_dir, load_copies

    folder = generation_dir(rival_searcher.root, rival_searcher.manifest.generation)
    stored = load_copies(folder / COPIES_FILE, rival_searcher._conn)
    assert stored and stored == first_copies(rival_searcher._conn)
    assert load_copies(folder / "absent.npy", rival_searcher._conn) == stored


def test_query_without_diacritics_gives_the_same_top_hit(searcher):
    accented = searcher.search("kỷ luật đảng viên", k=3)
    folded = searcher.search("ky luat dang vien", k=3)
    assert folded.hits[0].passage_id == accented.hits[0].passage_id
    assert DISCIPLINE in folded.hits[0].text
    assert "<mark>" in folded.hits[0].highlight


def test_hits_carry_the_cli_contract_fields(searcher):
    result = searcher.search("phòng, chống tham nhũng", k=5).to_json()
    assert set(result) == {"query", "mode", "total", "hits"}
    hit = result["hits"][0]
    assert set(hit) >= {
        "rank",
        "score",
        "passage_id",
        "doc",
        "title",
        "section",
        "text",
        "highlight",
        "topic",
        "topic_scores",
    }
    assert [h["rank"] for h in result["hits"]] == [1, 2, 3, 4, 5]


def test_paging_continues_where_the_first_page_ends(searcher):
    first = searcher.search("tham nhũng", k=4)
    second = searcher.search("tham nhũng", k=4, offset=4)
    assert [h.rank for h in second.hits] == [5, 6, 7, 8]
    assert not {h.passage_id for h in first.hits} & {h.passage_id for h in second.hits}


def test_filters_by_document_section_and_topic(searcher):
    by_doc = searcher.search("tham nhũng", k=10, doc="*Luat-*")
    assert by_doc.hits and all("Luat-" in h.doc for h in by_doc.hits)
    by_section = searcher.search("đảng viên", k=10, section="kiem tra, giam sat")
    assert by_section.hits and all("kiểm tra, giám sát" in h.section for h in by_section.hits)
    by_topic = searcher.search("đảng viên", k=10, topic="inspection")
    assert all(h.topic == "inspection" for h in by_topic.hits)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": ""}, "empty"),
        ({"query": "   \u200b "}, "empty"),
        ({"query": "x" * 5000}, "limit"),
        ({"query": "a", "k": 0}, "between 1"),
        ({"query": "a", "k": 10**6}, "between 1"),
        ({"query": "a", "offset": -1}, "offset"),
        ({"query": "a", "mode": "fuzzy"}, "hybrid"),
        ({"query": "a", "topic": "sports"}, "inspection"),
    ],
)
def test_bad_queries_are_refused_with_the_fix(searcher, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        searcher.search(**kwargs)


def test_browsing_passages_documents_and_neighbours(searcher):
    total, page = searcher.list_passages(limit=5)
    assert total == searcher.manifest.passages and len(page) == 5
    passage, around = searcher.get_passage(page[2].passage_id, context=1)
    assert [p.paragraph for p in around] == [2, 3, 4] and passage.paragraph == 3
    docs = searcher.documents()
    assert len(docs) == 2 and sum(d.passages for d in docs) == total
    assert searcher.get_passage("no-such-id") is None


def test_index_refuses_another_model(small_index, embedder):
    from index.search import Searcher

    class OtherModel:
        name, dim, fingerprint = "other/model", embedder.dim, "0000"

    with pytest.raises(IndexError_, match="rebuild"):
        Searcher(small_index, OtherModel())


def test_missing_index_names_the_command(tmp_path, embedder):
    from index.search import Searcher

    with pytest.raises(IndexError_, match="vnsearch index"):
        Searcher(tmp_path / "nothing", embedder)
