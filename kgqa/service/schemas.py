"""Request and response bodies of the HTTP API (the OpenAPI schema at /docs is generated from these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from kgqa.model.candidate import Candidate
from kgqa.model.decode.explain import PathTrace
from kgqa.service.limits import MAX_BATCH_QUESTIONS, MAX_QUESTION_CHARS, MAX_TOP_K


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
    explain: bool = Field(
        False, strict=True, description="also return the best path's trace: what the KB allowed at each step"
    )


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
    path_probability: float = Field(
        description="the path's probability under the model, renormalised over the KB paths at each step (look-ahead "
        "re-weighted): how sure the decoder was among KB paths, not the chance that the answer is right"
    )
    confidence: float | None = Field(
        None,
        description="the calibrated probability that this answer is right: on the question's top candidate only, "
        "null on the others and without a confidence model",
    )
    contributions: dict[str, float] = Field(
        default_factory=dict,
        description="what each feature group of the learned ranker added to the score (score, relation, "
        "answer_kind, meaning, kind, name, lexicon, neighbours, words, match); empty without a ranker",
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
            path_probability=candidate.path_probability,
            confidence=candidate.confidence,
            contributions=dict(candidate.contributions),
        )


class TraceStep(BaseModel):
    part: str = Field(description="name, relation, meaning, separator (between parts) or end")
    text: str = Field(description="the character decoded; empty for a separator or the end")
    allowed: int = Field(description="how many tokens the KB allowed at this step (the end of a path counts as one)")
    forced: bool = Field(description="the KB allowed only this token")
    decoded: bool = Field(description="false where the KB completed the path: one KB key was left, decoding stopped")


class Trace(BaseModel):
    source: str = Field(description="beam (decoded) or name-anchored (a KB name in the question, scored by the model)")
    steps: list[TraceStep]
    chosen_steps: int = Field(description="steps where the KB allowed several tokens and the model chose")
    forced_steps: int = Field(description="steps the KB allowed one token; chosen_steps + forced_steps = all steps")
    completed_steps: int = Field(description="forced steps the KB spelled after decoding stopped (one key left)")
    decoded_steps: int = Field(description="steps run through the decoder: all steps less completed_steps")
    log_probability: dict[str, float] = Field(
        default_factory=dict, description="the path's log-probability by part: name, relation, meaning"
    )

    @classmethod
    def of(cls, trace: PathTrace, candidate: Candidate) -> Trace:
        segments = candidate.segments
        parts = {"name": segments.name, "relation": segments.relation, "meaning": segments.meaning} if segments else {}
        return cls(
            source=trace.source,
            steps=[TraceStep(**vars(step)) for step in trace.steps],
            chosen_steps=trace.chosen_steps,
            forced_steps=trace.forced_steps,
            completed_steps=trace.completed_steps,
            decoded_steps=trace.decoded_steps,
            log_probability=parts,
        )


class AnswerResponse(BaseModel):
    question: str
    answer: Answer | None = Field(
        description="the best candidate; null when no KB path fits the question, or when the KB does not hold the "
        "answer (the best candidate's confidence is below the threshold): see reason"
    )
    reason: Literal["no_kb_path", "below_threshold"] | None = Field(
        None, description="why answer is null: no KB path fits, or the confidence is below the threshold"
    )
    confidence: float | None = Field(
        None, description="the best candidate's calibrated probability of being right (null without candidates)"
    )
    threshold: float | None = Field(
        None, description="the confidence below which the service abstains (null: it never abstains)"
    )
    candidates: list[Answer] = Field(description="best first; listed also when the service abstains")
    took_ms: float
    trace: Trace | None = Field(None, description='the answer\'s path step by step, with "explain": true')


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
    runtime: str = Field(description="what runs the model: onnx (ONNX Runtime) or torch (the reference)")
    quantized: bool = Field(description="int8 layers")
    added_characters: int = Field(description="index characters the model had no token for, added at load")


class Readiness(Health):
    index: ServedIndex
    model: ServedModel


class InfoModel(BaseModel):
    name: str = Field(description="the model directory's name")
    parameters: int = Field(description="parameters stored in model.safetensors")
    vocabulary_size: int = Field(description="tokens, including characters added at load for this index")
    added_characters: int
    runtime: str = Field(description="what runs the model: onnx (ONNX Runtime) or torch (the reference)")
    quantized: bool
    ranker: bool = Field(description="candidates are ordered by the learned ranker")
    abstain_below: float | None = Field(
        None,
        description="the confidence below which the service answers null (the KB does not hold it); null: answers "
        "carry no confidence and nothing is withheld",
    )
    architecture: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict, description="from the model's kgqa.json")
    dev: dict[str, Any] = Field(
        default_factory=dict, description="dev figures recorded by training, tuning and the ranker fit (out of fold)"
    )


class InfoIndex(BaseModel):
    name: str
    triples: int
    names: int
    relations: int
    objects: int
    manifest_sha256: str
    created_at: str
    key_order: str
    sources: list[dict[str, Any]] = Field(description="the KB files it was built from: file name and sha256")


class InfoService(BaseModel):
    workers: int
    max_batch_size: int
    max_batch_cost: int = Field(description="beam-characters a batch may hold")
    batch_wait_ms: float
    max_queue: int
    request_timeout_s: float
    api_key_required: bool
    limits: dict[str, int]


class Info(BaseModel):
    version: str = Field(description="kgqa's version")
    model: InfoModel
    index: InfoIndex
    decoding: dict[str, Any] = Field(description="the decoding options in force")
    service: InfoService
