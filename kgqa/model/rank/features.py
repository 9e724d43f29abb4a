"""What the learned ranker knows of a candidate path: numbers computed from the question, the path and the KB.

No feature names a relation, a meaning or a name: dev and test relations never occur in train, so the ranker may only
learn how a path *fits* the question (scores, overlaps, the kind of answer asked for against the object's form,
how many entities share the name, how often the KB's entities of this kind hold the relation), never which relations
are likely in training. Features come in groups, so each group can be switched off in the evaluation and the page can
say which group moved a candidate.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from kgqa.data import normalize
from kgqa.model.candidate import Candidate
from kgqa.model.facts import QuestionFacts
from kgqa.model.rank.forms import QUESTION_KINDS, bigram_share, object_forms, question_kinds
from kgqa.model.rank.lexicon import Lexicon
from kgqa.model.rank.semantic import SemanticFeatures
from kgqa.trie import KBIndex, RelationStats

if TYPE_CHECKING:
    from kgqa.model.rank.matcher import RelationMatcher  # torch: imported only where a model has one

# Feature names by group; the ranker's input columns are these, in this order.
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "score": (
        "log_prob",
        "log_prob_gap",
        "log_prob_rank",
        "share",
        "name_log_prob",
        "relation_log_prob",
        "meaning_log_prob",
        "in_beam",
        "beam_rank",
    ),
    "relation": (
        "relation_lcs_share",
        "relation_lcs_rest_share",
        "relation_literal",
        "relation_bigram_share",
        "relation_chars_share",
        "relation_length",
        "relation_best_of_name",
        "relation_lcs_rank",
    ),
    "answer_kind": tuple(f"asks_{k}" for k in QUESTION_KINDS)
    + tuple(f"object_{k}" for k in ("when", "number", "unit", "title", "where", "who"))
    + tuple(f"fits_{k}" for k in QUESTION_KINDS),
    "meaning": (
        "has_meaning",
        "meaning_lcs_share",
        "meaning_bigram_question",
        "meaning_bigram_relation",
        "entities_of_name",
        "entities_with_relation",
        "entity_relations",
        "meaning_rank",
    ),
    # which relations the KB's entities of the candidate's kind hold (kgqa.trie.stats, counted at index build)
    "kind": (
        "kind_prior",
        "kind_fit",
        "kind1_fit",
        "kind_lift",
        "kind1_lift",
        "kind_lift_gap",
        "kind1_lift_gap",
    ),
    "name": (
        "name_length",
        "name_over_longest",
        "name_is_longest",
        "name_literal",
        "name_position",
        "name_coverage",
        "names_in_question",
    ),
}
FEATURE_NAMES: tuple[str, ...] = tuple(name for group in FEATURE_GROUPS.values() for name in group)
# The learned question-relation matcher's score (kgqa.model.rank.matcher), when the model directory has one.
MATCH_GROUP: dict[str, tuple[str, ...]] = {"match": ("match", "match_gap", "match_rank")}
# The translation lexicon's score (kgqa.model.rank.lexicon), when the model directory has one.
LEXICON_GROUP: dict[str, tuple[str, ...]] = {"lexicon": ("lexicon", "lexicon_gap")}


class FeatureExtractor:
    """Feature rows for a question's candidates (one row each, columns ``self.names``)."""

    def __init__(
        self,
        index: KBIndex,
        matcher: RelationMatcher | None = None,
        lexicon: Lexicon | None = None,
        semantic: SemanticFeatures | None = None,
    ) -> None:
        self.index = index
        self.matcher = matcher
        self.lexicon = lexicon
        self.semantic = semantic
        self.groups = (
            FEATURE_GROUPS
            | (LEXICON_GROUP if lexicon is not None else {})
            | (semantic.groups if semantic is not None else {})
            | (MATCH_GROUP if matcher is not None else {})
        )
        self.names: tuple[str, ...] = tuple(name for group in self.groups.values() for name in group)

    def rows_many(
        self, questions: Sequence[QuestionFacts], candidates: Sequence[Sequence[Candidate]]
    ) -> list[np.ndarray]:
        """One array of rows per question (the matcher scores all their candidates in one batch)."""
        stats = self.index.relation_stats
        out = [
            _base_rows(facts, c, stats) if c else np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
            for facts, c in zip(questions, candidates, strict=True)
        ]
        for scorer in (self.lexicon, self.semantic):
            if scorer is not None:
                out = [
                    np.concatenate([rows, scorer.columns(facts, own)], axis=1)
                    for rows, facts, own in zip(out, questions, candidates, strict=True)
                ]
        if self.matcher is not None:
            paths = [[(c.name, c.relation, c.meaning, c.object) for c in own] for own in candidates]
            texts = [facts.question for facts in questions]
            for i, match in enumerate(self.matcher.scores_many(texts, paths)):
                if len(match):
                    rank = np.argsort(np.argsort(-match, kind="stable"), kind="stable")
                    out[i] = np.concatenate([out[i], np.stack([match, match - match.max(), rank], axis=1)], axis=1)
                else:
                    out[i] = np.zeros((0, len(self.names)), dtype=np.float32)
        return [rows.astype(np.float32) for rows in out]


def _base_rows(facts: QuestionFacts, candidates: Sequence[Candidate], stats: RelationStats) -> np.ndarray:
    """Rows of ``FEATURE_NAMES``: each feature named where it is computed, then laid out in that order."""
    features = [
        _score_features(candidates),
        _relation_features(facts, candidates),
        _answer_kind_features(facts, candidates),
        _meaning_features(facts, candidates),
        _kind_features(stats, candidates),
        _name_features(facts, candidates),
    ]
    rows = []
    for per_group in zip(*features, strict=True):
        named = {name: value for group in per_group for name, value in group.items()}
        rows.append([named[name] for name in FEATURE_NAMES])
    out = np.asarray(rows, dtype=np.float32)
    out[~np.isfinite(out)] = -50.0  # a log-prob of -inf (never chosen) stays finite for the ranker
    return out


Named = dict[str, float]


def _score_features(candidates: Sequence[Candidate]) -> list[Named]:
    log_probs = np.array([c.log_probability for c in candidates], dtype=np.float64)
    best = log_probs.max()
    shares = np.exp(log_probs - best)
    shares /= shares.sum()
    lp_rank = np.argsort(np.argsort(-log_probs, kind="stable"), kind="stable")
    rows = []
    for i, c in enumerate(candidates):
        seg = c.segments
        rows.append(
            {
                "log_prob": c.log_probability,
                "log_prob_gap": c.log_probability - best,
                "log_prob_rank": float(lp_rank[i]),
                "share": float(shares[i]),
                "name_log_prob": seg.name if seg else c.log_probability,
                "relation_log_prob": seg.relation if seg else 0.0,
                "meaning_log_prob": seg.meaning if seg else 0.0,
                "in_beam": float(c.beam_rank is not None),
                "beam_rank": float(c.beam_rank if c.beam_rank is not None else 20),
            }
        )
    return rows


def _relation_features(facts: QuestionFacts, candidates: Sequence[Candidate]) -> list[Named]:
    # how each relation ranks among all its name's relations by share of the rest of the question
    name_relation_shares = {}
    for name in {c.name for c in candidates}:
        relations = {p.relation for p in facts.paths(name)}
        name_relation_shares[name] = sorted((facts.share(r, without=name) for r in relations), reverse=True)
    rows = []
    for c in candidates:
        relation = normalize(c.relation)
        rest = facts.rest(c.name)
        share = facts.share(c.relation, without=c.name)
        shares_of_name = name_relation_shares[c.name]
        rows.append(
            {
                "relation_lcs_share": facts.share(c.relation),
                "relation_lcs_rest_share": share,
                "relation_literal": float(relation in facts.text),
                "relation_bigram_share": bigram_share(relation, rest),
                "relation_chars_share": len(set(relation) & set(rest)) / max(1, len(set(relation))),
                "relation_length": float(len(relation)),
                "relation_best_of_name": float(share >= shares_of_name[0] - 1e-9) if shares_of_name else 0.0,
                "relation_lcs_rank": float(sum(s > share + 1e-9 for s in shares_of_name)),
            }
        )
    return rows


def _answer_kind_features(facts: QuestionFacts, candidates: Sequence[Candidate]) -> list[Named]:
    kinds = question_kinds(facts.text)
    rows = []
    for c in candidates:
        forms = object_forms(c.object)
        fits = {k: kinds[k] * (forms[k] if k != "number" else max(forms["number"], forms["unit"])) for k in kinds}
        rows.append(
            {f"asks_{k}": v for k, v in kinds.items()}
            | {f"object_{k}": v for k, v in forms.items()}
            | {f"fits_{k}": v for k, v in fits.items()}
        )
    return rows


def _meaning_features(facts: QuestionFacts, candidates: Sequence[Candidate]) -> list[Named]:
    # per name: its entities (meanings) and the relations each holds
    entities: dict[str, dict[str, set[str]]] = {}
    for c in candidates:
        if c.name not in entities:
            by_meaning: dict[str, set[str]] = defaultdict(set)
            for p in facts.paths(c.name):
                by_meaning[p.meaning].add(p.relation)
            entities[c.name] = by_meaning
    # each meaning's rank by log-prob among the candidates of the same name and relation
    by_name_relation: dict[tuple[str, str], list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_name_relation[(c.name, c.relation)].append(c)
    meaning_rank: dict[tuple[str, str, str], int] = {}
    for group in by_name_relation.values():
        for rank, c in enumerate(sorted(group, key=lambda c: -c.log_probability)):
            meaning_rank[(c.name, c.relation, c.meaning)] = rank
    rows = []
    for c in candidates:
        relation = normalize(c.relation)
        meaning = normalize(c.meaning)
        by_meaning = entities[c.name]
        rows.append(
            {
                "has_meaning": float(bool(meaning)),
                "meaning_lcs_share": facts.share(c.meaning),
                "meaning_bigram_question": bigram_share(meaning, facts.text),
                "meaning_bigram_relation": len(set(meaning) & set(relation)) / max(1, len(set(relation)))
                if meaning
                else 0.0,
                "entities_of_name": float(len(by_meaning)),
                "entities_with_relation": float(sum(c.relation in rs for rs in by_meaning.values())),
                "entity_relations": float(len(by_meaning.get(c.meaning, ()))),
                "meaning_rank": float(meaning_rank[(c.name, c.relation, c.meaning)]),
            }
        )
    return rows


def _kind_features(stats: RelationStats, candidates: Sequence[Candidate]) -> list[Named]:
    fits = [stats.fit(c.relation, c.meaning) for c in candidates]
    # each lift against the best of the same name and relation: which homonym's kind holds the relation most
    best: dict[tuple[str, str], tuple[float, float]] = {}
    for c, fit in zip(candidates, fits, strict=True):
        top = best.get((c.name, c.relation), (-math.inf, -math.inf))
        best[(c.name, c.relation)] = (max(top[0], fit["lift"]), max(top[1], fit["lift1"]))
    rows = []
    for c, fit in zip(candidates, fits, strict=True):
        top = best[(c.name, c.relation)]
        rows.append(
            {
                "kind_prior": fit["prior"],
                "kind_fit": fit["kind"],
                "kind1_fit": fit["kind1"],
                "kind_lift": fit["lift"],
                "kind1_lift": fit["lift1"],
                "kind_lift_gap": fit["lift"] - top[0],
                "kind1_lift_gap": fit["lift1"] - top[1],
            }
        )
    return rows


def _name_features(facts: QuestionFacts, candidates: Sequence[Candidate]) -> list[Named]:
    text = facts.text
    longest = facts.longest_name
    rows = []
    for c in candidates:
        position = text.find(normalize(c.name))
        rows.append(
            {
                "name_length": float(len(c.name)),
                "name_over_longest": len(c.name) / longest if longest else 0.0,
                "name_is_longest": float(len(c.name) == longest),
                "name_literal": float(position >= 0),
                "name_position": position / max(1, len(text)) if position >= 0 else -1.0,
                "name_coverage": len(c.name) / max(1, len(text)),
                "names_in_question": float(len(facts.names)),
            }
        )
    return rows
