"""Request and response bodies of the HTTP API (the OpenAPI schema at /docs is generated from these)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from kgqa.model.candidate import Candidate

# Fixed at import (the schema must be static); ServiceSettings' limits of the same names default to these and can
# only tighten them, checked in the routes.
MAX_QUESTION_CHARS = 256
MAX_TOP_K = 20
MAX_BATCH_QUESTIONS = 256


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty or only whitespace")
    return text


Question = Annotated[
    str,
    Field(strict=True, min_length=1, max_length=MAX_QUESTION_CHARS, examples=["你知道守望星光是哪家公司出品的吗？"]),
    AfterValidator(_not_blank),
]


def _a_number(value: object) -> object:
    # JSON's 2 and 2.0 are both the integer 2 (JSON Schema agrees); "2" and true are not numbers
    if isinstance(value, (str, bool)):
        raise ValueError("must be an integer, not a string or boolean")
    return value


TopK = Annotated[
    int,
    BeforeValidator(_a_number),
    Field(ge=1, le=MAX_TOP_K, description="how many candidate paths to return, best first"),
]


class _Strict(BaseModel):
    # unknown fields are refused; no type coercion: "3" is not a top_k, 3 is not a question
    model_config = ConfigDict(extra="forbid")


class AnswerRequest(_Strict):
    question: Question
    top_k: TopK = 1


class BatchRequest(_Strict):
    questions: list[Question] = Field(min_length=1, max_length=MAX_BATCH_QUESTIONS)
    top_k: TopK = 1


class Path(BaseModel):
    subject: str = Field(description="the KB head: name（meaning）, or the name alone")
    name: str
    meaning: str
    predicate: str = Field(description="the relation")
    object: str


class Answer(Path):
    score: float = Field(
        description="what candidates are ranked by: the learned ranker's score, or (without one) the log-probability "
        "plus re-ranking bonuses"
    )
    probability: float = Field(description="the path's probability under the model (look-ahead re-weighted)")
    contributions: dict[str, float] = Field(
        default_factory=dict,
        description="what each feature group of the learned ranker added to the score (score, relation, "
        "answer_kind, meaning, name, match); empty without a ranker",
    )

    @classmethod
    def of(cls, candidate: Candidate) -> Answer:
        return cls(
            subject=candidate.subject,
            name=candidate.name,
            meaning=candidate.meaning,
            predicate=candidate.relation,
            object=candidate.object,
            score=candidate.score,
            probability=candidate.probability,
            contributions=dict(candidate.contributions),
        )


class AnswerResponse(BaseModel):
    question: str
    answer: Answer | None = Field(description="the best candidate; null when no KB path fits the question")
    candidates: list[Answer]
    took_ms: float


class BatchResponse(BaseModel):
    results: list[AnswerResponse] = Field(description="one per question, in the order asked")
    took_ms: float


class EntityResponse(BaseModel):
    name: str
    count: int = Field(description="triples of this name, before the limit")
    truncated: bool
    triples: list[Path]


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong, in words")
    errors: list[dict] | None = Field(None, description="each invalid field, for a request that failed validation")


class Health(BaseModel):
    status: str


class ServedIndex(BaseModel):
    path: str = Field(description="the configured index directory")
    manifest_sha256: str = Field(description="sha256 of its manifest.json, which holds every index file's sha256")
    triples: int
    created_at: str = Field(description="when the index was built (UTC, ISO 8601)")


class ServedModel(BaseModel):
    path: str
    quantized: bool = Field(description="int8 Linear layers")
    added_characters: int = Field(description="index characters the model had no token for, added at load")


class Readiness(Health):
    index: ServedIndex
    model: ServedModel
