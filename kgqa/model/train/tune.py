"""Choose the look-ahead strength and the re-ranking bonuses on a slice of questions (``kgqa tune``).

A grid search: each look-ahead strength decodes the questions once; every pair of bonus weights then re-ranks those
beams. Ties go to the simplest setting: weaker look-ahead, smaller weights. The choice and the whole grid are
recorded under ``decoding`` in the model's ``kgqa.json``, which ``DecodeOptions.from_training_info`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kgqa.data.metrics import evaluate_answers
from kgqa.data.questions import Question
from kgqa.model.answerer import QuestionAnswerer
from kgqa.model.candidate import top_answers
from kgqa.model.modeling import read_training_info, write_training_info
from kgqa.model.rank.rerank import RerankWeights, rerank

TUNED_HERE = ("lookahead_strength", "rerank_relation_weight", "rerank_name_weight")


def tune_decoding(
    answerer: QuestionAnswerer,
    questions: Sequence[Question],
    strengths: Sequence[float],
    relation_weights: Sequence[float],
    name_weights: Sequence[float],
    top_k: int,
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """(every grid point with its EM_O, the chosen one). ``answerer`` should rank by the bonuses (no learned ranker)."""
    golds = [q.answer for q in questions]
    table: list[dict[str, float]] = []
    for strength in strengths:
        decoded = answerer.with_options(lookahead_strength=strength).answer(
            [q.question for q in questions], top_k=top_k, progress=True
        )
        for relation in relation_weights:
            for name in name_weights:
                weights = RerankWeights(relation, name)
                pairs = zip(questions, decoded, strict=True)
                best = [rerank(answerer.facts(q.question), c, weights)[:1] for q, c in pairs]
                em_o = evaluate_answers(top_answers(best), golds)["EM_O"]
                table.append(
                    {
                        "lookahead_strength": strength,
                        "rerank_relation_weight": relation,
                        "rerank_name_weight": name,
                        "EM_O": round(em_o, 2),
                    }
                )
                print(f"α {strength:g}, relation weight {relation:g}, name weight {name:g}: EM_O {em_o:.2f}")
    chosen = max(
        table,
        key=lambda r: (r["EM_O"], -r["lookahead_strength"], -r["rerank_relation_weight"], -r["rerank_name_weight"]),
    )
    return table, chosen


def record_tuning(model_dir: Path, chosen: dict[str, float], table: list[dict[str, float]], chosen_on: str) -> None:
    """Write the choice (and the grid) under ``decoding`` in the model's ``kgqa.json``, keeping what else is there."""
    info: dict[str, Any] = read_training_info(model_dir)
    info["decoding"] = (
        info.get("decoding", {}) | {k: chosen[k] for k in TUNED_HERE} | {"chosen_on": chosen_on, "grid": table}
    )
    write_training_info(model_dir, info)
