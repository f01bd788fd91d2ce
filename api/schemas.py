"""Pydantic schemas of the HTTP API: what each endpoint accepts and returns (and /docs shows)."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from nlp.normalize import has_words

MAX_CLASSIFY_TEXTS = 64
MAX_CLASSIFY_CHARS = 10_000
MAX_SECTION_CHARS = 1_000


class ModelInfoOut(BaseModel):
    """The embedding model an index was built with."""

    name: str
    dim: int
    fingerprint: str


class HitOut(BaseModel):
    """One search result; `highlight` is HTML-escaped text with <mark> around query words."""

    rank: int
    score: float
    passage_id: str
    doc: str = Field(description="Path of the document the passage comes from.")
    title: str
    section: str = Field(description="Section headings above the passage, joined by ' > '.")
    paragraph: int = Field(description="Position of the passage in its document (from 1).")
    text: str
    highlight: str = Field(description="HTML-escaped snippet with <mark> around matched words.")
    topic: str | None
    topic_scores: dict[str, float] | None


class SearchOut(BaseModel):
    """The answer to one query: the same object as `vnsearch search --json`."""

    query: str
    mode: str
    total: int = Field(description="Ranked candidates for the query (at most a few hundred).")
    hits: list[HitOut]


class PassageOut(BaseModel):
    """A stored passage with the document it belongs to."""

    passage_id: str
    doc_id: int
    doc: str
    title: str
    section: str
    paragraph: int
    start: int = Field(description="Character offset of the passage in its document.")
    end: int
    text: str
    topic: str | None
    topic_scores: dict[str, float] | None


class PassageListOut(BaseModel):
    """A page of passages in document order."""

    total: int
    limit: int
    offset: int
    passages: list[PassageOut]


class PassageContextOut(BaseModel):
    """A passage and the passages around it."""

    passage: PassageOut
    neighbours: list[PassageOut] = Field(
        description="The passages around it in document order, the passage itself included."
    )


class DocumentOut(BaseModel):
    """An indexed document with its passage and per-topic counts."""

    id: int
    title: str
    path: str
    passages: int
    topics: dict[str, int]
    sha256: str


class DocumentListOut(BaseModel):
    """Indexed documents: `total` match, `documents` is the page asked for."""

    total: int
    documents: list[DocumentOut]


class DocumentDetailOut(BaseModel):
    """A document and a page of its passages in order."""

    document: DocumentOut
    total: int
    limit: int
    offset: int
    passages: list[PassageOut]


ClassifyText = Annotated[str, StringConstraints(max_length=MAX_CLASSIFY_CHARS)]


class ClassifyIn(BaseModel):
    """Paragraphs to tag with a topic."""

    model_config = ConfigDict(extra="forbid")

    texts: list[ClassifyText] = Field(
        min_length=1,
        max_length=MAX_CLASSIFY_TEXTS,
        description=f"1 to {MAX_CLASSIFY_TEXTS} paragraphs of at most {MAX_CLASSIFY_CHARS} "
        "characters each.",
        examples=[["Thi hành kỷ luật 151 đảng viên và 04 tổ chức đảng."]],
    )
    sections: list[Annotated[str, StringConstraints(max_length=MAX_SECTION_CHARS)]] | None = Field(
        default=None,
        description='The section heading of each paragraph, in the order of `texts` ("" '
        "for none); the classifier reads it beside the paragraph, as the index does.",
        examples=[["3. Công tác kiểm tra, giám sát và thi hành kỷ luật Đảng"]],
    )

    @field_validator("texts")
    @classmethod
    def _no_empty_text(cls, texts: list[str]) -> list[str]:
        empty = [str(i) for i, text in enumerate(texts) if not has_words(text)]
        if empty:
            raise ValueError(
                f"texts at positions {', '.join(empty)} have no words; send paragraphs of text"
            )
        return texts

    @model_validator(mode="after")
    def _one_section_per_text(self) -> ClassifyIn:
        if self.sections is not None and len(self.sections) != len(self.texts):
            raise ValueError(
                f"sections has {len(self.sections)} entries for {len(self.texts)} texts; send "
                'one heading per text ("" for none) or leave sections out'
            )
        return self


class ClassifyOut(BaseModel):
    """The most probable topic of one paragraph and the probability of every topic."""

    topic: str
    scores: dict[str, float]


class HealthOut(BaseModel):
    """The service is up and serving this index generation."""

    status: str
    generation: int
    passages: int


class ClassifierInfoOut(BaseModel):
    """The topic classifier the service uses."""

    labels: list[str]


class MemoryOut(BaseModel):
    """The service process's memory, from /proc (0 where the system does not say)."""

    rss_bytes: int = Field(description="Resident set size now.")
    peak_rss_bytes: int = Field(description="Highest resident set size since the start.")


class StatsOut(BaseModel):
    """Counts, models and on-disk size of the served index."""

    index: str = Field(description="The index folder.")
    documents: int
    passages: int
    generation: int
    model: ModelInfoOut
    dense_kind: str
    index_bytes: int
    topics: dict[str, int] = Field(description="Passages per topic across the index.")
    classifier: ClassifierInfoOut
    memory: MemoryOut


class ErrorOut(BaseModel):
    """Why a request was refused; `detail` names the valid values or the fix."""

    detail: str
    errors: list[dict] | None = Field(
        default=None, description="For invalid parameters: where and what, one per problem."
    )
