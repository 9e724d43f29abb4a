"""What the learned ranker knows of a candidate path: numbers computed from the question, the path and the KB.

No feature names a relation, a meaning or a name: dev and test relations never occur in train, so the ranker may only
learn how a path *fits* the question (scores, overlaps, the kind of answer asked for against the object's form,
how many entities share the name), never which relations are likely. Features come in groups, so each group can be
switched off in the evaluation and the page can say which group moved a candidate.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from kgqa.data import lcs_length, normalize
from kgqa.model.candidate import Candidate
from kgqa.model.rank.matcher import RelationMatcher
from kgqa.trie import KBIndex

# The kind of answer a question asks for, by its wording. Each generalises across relations never seen in training.
QUESTION_KINDS: dict[str, re.Pattern[str]] = {
    "when": re.compile(r"什么时候|何时|哪年|哪一年|几年|哪天|哪一天|日期|时间|几月|多会|年份|生日|出生于?哪"),
    "number": re.compile(
        r"多少|多大|多高|多长|多重|多久|多远|多宽|多深|几[个位名种部岁次层家所条]|面积|人口|数量|海拔"
    ),
    "title": re.compile(
        r"哪部|哪本|什么书|哪个书|哪一部|哪一本|什么作品|哪些作品|代表作|作品|著作|书籍|专辑|歌曲|电影|小说"
    ),
    "where": re.compile(r"哪里|哪儿|在哪|什么地方|何地|何处|哪个国家|哪个城市|哪个省|哪国|位于|地址|地点|籍贯|出生地"),
    "who": re.compile(r"谁|哪位|什么人|何人|哪个人|作者|导演|主演|演唱|创始人|出品人|编剧"),
}
# The form of an object string.
_DATE = re.compile(r"\d{3,4}\s*年|\d{1,2}\s*月|\d{1,2}\s*日|\d{4}[-./]\d{1,2}|^\d{4}$|世纪|朝|代$")
_NUMBER = re.compile(r"\d|[一二三四五六七八九十百千万亿两]+[个米吨人岁层公里平方]")
_UNIT = re.compile(
    r"\d[\d.,]*\s*(?:[a-zA-Z%℃°]+|[个米吨人岁层元亩里尺斤克升秒分年天月周页部集章册首位名家所种条座]|平方|公里|小时|万|亿)"
)
_PLACE = re.compile(r"[省市县区州国镇乡村岛山河湖江路街道洲]$|省|市|县|中国|美国|日本|英国|北京|上海")
_PERSON = re.compile(r"^[\u4e00-\u9fff·]{2,4}(?:[、，,][\u4e00-\u9fff·]{2,4})*$")


def object_forms(obj: str) -> dict[str, float]:
    obj = obj.strip()
    return {
        "when": float(bool(_DATE.search(obj))),
        "number": float(bool(_NUMBER.search(obj))),
        "unit": float(bool(_UNIT.search(obj))),
        "title": float("《" in obj),
        "where": float(bool(_PLACE.search(obj))),
        "who": float(bool(_PERSON.match(obj))),
    }


def question_kinds(question: str) -> dict[str, float]:
    return {kind: float(bool(pattern.search(question))) for kind, pattern in QUESTION_KINDS.items()}


def bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)}


def _share(part: str, whole: str) -> float:
    """LCS(part, whole) / len(part): how much of ``part`` the ``whole`` spells, in order."""
    return lcs_length(part, whole) / len(part) if part else 0.0


def _bigram_share(part: str, whole: str) -> float:
    grams = bigrams(part)
    return len(grams & bigrams(whole)) / len(grams) if grams else 0.0


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


class FeatureExtractor:
    """Feature rows for a question's candidates (one row each, columns ``self.names``)."""

    def __init__(self, index: KBIndex, matcher: RelationMatcher | None = None) -> None:
        self.index = index
        self.matcher = matcher
        self.groups = FEATURE_GROUPS | (MATCH_GROUP if matcher is not None else {})
        self.names: tuple[str, ...] = tuple(name for group in self.groups.values() for name in group)

    def rows(self, question: str, candidates: Sequence[Candidate]) -> np.ndarray:
        return self.rows_many([question], [candidates])[0]

    def rows_many(self, questions: Sequence[str], candidates: Sequence[Sequence[Candidate]]) -> list[np.ndarray]:
        """``rows`` for many questions (the matcher scores all their candidates in one batch)."""
        out = [
            self._base_rows(q, c) if c else np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
            for q, c in zip(questions, candidates, strict=True)
        ]
        if self.matcher is not None:
            paths = [[(c.name, c.relation, c.meaning, c.object) for c in own] for own in candidates]
            for i, match in enumerate(self.matcher.scores_many(questions, paths)):
                if len(match):
                    rank = np.argsort(np.argsort(-match, kind="stable"), kind="stable")
                    out[i] = np.concatenate([out[i], np.stack([match, match - match.max(), rank], axis=1)], axis=1)
                else:
                    out[i] = np.zeros((0, len(self.names)), dtype=np.float32)
        return [rows.astype(np.float32) for rows in out]

    def _base_rows(self, question: str, candidates: Sequence[Candidate]) -> np.ndarray:
        text = normalize(question)
        names_found = self.index.names_in(question)
        longest = len(names_found[0]) if names_found else 0
        kinds = question_kinds(text)
        log_probs = np.array([c.log_probability for c in candidates], dtype=np.float64)
        best = log_probs.max()
        shares = np.exp(log_probs - best)
        shares /= shares.sum()
        lp_rank = np.argsort(np.argsort(-log_probs, kind="stable"), kind="stable")

        # per name: its entities and which relations each holds (one index walk a name)
        entities: dict[str, dict[str, set[str]]] = {}
        for c in candidates:
            if c.name not in entities:
                by_meaning: dict[str, set[str]] = defaultdict(set)
                for t in self.index.triples(c.name):
                    by_meaning[t.meaning].add(t.relation)
                entities[c.name] = by_meaning
        rest = {c.name: text.replace(normalize(c.name), "", 1) for c in candidates}
        relation_share = {(c.name, c.relation): _share(normalize(c.relation), rest[c.name]) for c in candidates}
        # how the relation ranks among all the name's relations by LCS share with the rest of the question
        name_relation_shares: dict[str, list[float]] = {}
        for name, by_meaning in entities.items():
            relations = {r for rs in by_meaning.values() for r in rs}
            name_relation_shares[name] = sorted((_share(normalize(r), rest[name]) for r in relations), reverse=True)
        meaning_rank: dict[tuple[str, str, str], int] = {}
        by_name_relation: dict[tuple[str, str], list[Candidate]] = defaultdict(list)
        for c in candidates:
            by_name_relation[(c.name, c.relation)].append(c)
        for group in by_name_relation.values():
            for rank, c in enumerate(sorted(group, key=lambda c: -c.log_probability)):
                meaning_rank[(c.name, c.relation, c.meaning)] = rank

        rows = []
        for i, c in enumerate(candidates):
            relation = normalize(c.relation)
            meaning = normalize(c.meaning)
            seg = c.segments
            share = relation_share[(c.name, c.relation)]
            shares_of_name = name_relation_shares[c.name]
            forms = object_forms(c.object)
            by_meaning = entities[c.name]
            position = text.find(normalize(c.name))
            values = [
                # score
                c.log_probability,
                c.log_probability - best,
                float(lp_rank[i]),
                float(shares[i]),
                seg.name if seg else c.log_probability,
                seg.relation if seg else 0.0,
                seg.meaning if seg else 0.0,
                float(c.beam_rank is not None),
                float(c.beam_rank if c.beam_rank is not None else 20),
                # relation
                _share(relation, text),
                share,
                float(relation in text),
                _bigram_share(relation, rest[c.name]),
                len(set(relation) & set(rest[c.name])) / max(1, len(set(relation))),
                float(len(relation)),
                float(share >= shares_of_name[0] - 1e-9) if shares_of_name else 0.0,
                float(sum(s > share + 1e-9 for s in shares_of_name)),
                # answer kind
                *kinds.values(),
                *forms.values(),
                *(kinds[k] * (forms[k] if k != "number" else max(forms["number"], forms["unit"])) for k in kinds),
                # meaning
                float(bool(meaning)),
                _share(meaning, text) if meaning else 0.0,
                _bigram_share(meaning, text),
                len(set(meaning) & set(relation)) / max(1, len(set(relation))) if meaning else 0.0,
                float(len(by_meaning)),
                float(sum(c.relation in rs for rs in by_meaning.values())),
                float(len(by_meaning.get(c.meaning, ()))),
                float(meaning_rank[(c.name, c.relation, c.meaning)]),
                # name
                float(len(c.name)),
                len(c.name) / longest if longest else 0.0,
                float(len(c.name) == longest),
                float(position >= 0),
                position / max(1, len(text)) if position >= 0 else -1.0,
                len(c.name) / max(1, len(text)),
                float(len(names_found)),
            ]
            rows.append(values)
        out = np.asarray(rows, dtype=np.float32)
        out[~np.isfinite(out)] = -50.0  # a log-prob of -inf (never chosen) stays finite for the ranker
        return out
