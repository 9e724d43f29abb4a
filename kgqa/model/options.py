"""How questions are decoded and ranked: the options every entry point (CLI, service, Ray, training) starts from.

Light on purpose (no torch): the CLI's flags and the service's settings take their defaults from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

from kgqa.data import MAX_QUESTION_CHARS

DEFAULT_BEAMS = 5  # paths proposed per question wherever none is given (CLI, service, evaluation)
# best_first: our search over the index (exact top-k, kgqa.model.decode.search); beam: transformers' beam search
Search = Literal["best_first", "beam"]
SEARCHES: tuple[str, ...] = get_args(Search)
# what runs the model (kgqa.model.runtime): ONNX Runtime where kgqa answers; torch, the reference it is tested against
Runtime = Literal["onnx", "torch"]


@dataclass(frozen=True)
class DecodeOptions:
    num_beams: int = DEFAULT_BEAMS  # paths proposed per question (the beam's width, or the search's k)
    search: Search = "best_first"
    constrained: bool = True  # off only for the ablation: then the output may be no KB path at all
    lookahead: bool = True
    lookahead_strength: float = 1.0  # α in p ** (1 / (α·Δ + 1)); 1 is the published formula
    end_when_determined: bool = True  # end a hypothesis once one KB key is left ahead (same score, fewer steps)
    rerank_relation_weight: float = 0.0  # see kgqa.model.rank.rerank; chosen by `kgqa tune`
    rerank_name_weight: float = 0.0
    anchor_names: int = 0  # name-anchored candidates, for the learned ranker: this many longest KB names
    # that no longer one contains (0: none)
    anchor_paths: int = 32  # at most this many paths of each anchored name (those closest to the question first)
    # best_first with the learned ranker: past a request's top_k, paths scoring more than this many nats below a
    # question's best are not looked for (0: the exact top k)
    search_margin: float = 0.0
    use_ranker: bool = True  # rank by the model directory's learned ranker when it has one (kgqa.model.rank.ranker)
    # each top answer's confidence, where the model has one (off where nothing shows it: a plain submission file; it
    # costs a decoder pass over each top path)
    confidence: bool = True
    # below this confidence the answer is "the KB does not hold this" (None: the threshold the model's confidence was
    # fit with; 0: never abstain)
    abstain_below: float | None = None
    batch_size: int = 64
    max_new_tokens: int = 128
    max_question_chars: int = MAX_QUESTION_CHARS  # longer questions are cut

    # what `kgqa tune` chooses and stores under "decoding" in a model's kgqa.json
    # and `kgqa ranker fit` the candidate set its ranker was fit on
    TUNED: ClassVar[tuple[str, ...]] = (
        "lookahead_strength",
        "rerank_relation_weight",
        "rerank_name_weight",
        "anchor_names",
        "anchor_paths",
        "search",
        "search_margin",
    )

    def __post_init__(self) -> None:
        if self.abstain_below is not None and not 0 <= self.abstain_below <= 1:
            raise ValueError(f"abstain_below is a confidence: between 0 and 1, not {self.abstain_below}")
        if self.search_margin < 0:
            raise ValueError(f"search_margin is nats below a question's best path: 0 or more, not {self.search_margin}")

    def beam_width(self, top_k: int) -> int:
        """Paths proposed for ``top_k`` answers: ``num_beams``, widened when more are asked for (the one rule)."""
        return max(self.num_beams, top_k)

    def clean(self, question: str) -> str:
        """What is decoded of a question: without outer white space, cut to ``max_question_chars``."""
        return question.strip()[: self.max_question_chars]

    @classmethod
    def from_training_info(cls, info: dict[str, Any], **changes: Any) -> DecodeOptions:
        """The options a model was tuned with (its ``kgqa.json``), with ``changes`` on top; a change of None is no
        change (a flag or setting left out: no option takes None)."""
        tuned = {k: v for k, v in info.get("decoding", {}).items() if k in cls.TUNED}
        return cls(**(tuned | {k: v for k, v in changes.items() if v is not None}))
