"""Unanswerable questions, made reproducibly from a KgCLUE-style question file and its knowledge base.

Three kinds, as a KBQA service meets them:
- ``entity``: every triple of every homonym of the gold name is removed (the KB does not know the entity);
- ``relation``: the gold relation is removed from every homonym of the gold name, which keeps its other relations;
- ``out_of_scope``: questions no encyclopedic KB answers (``resources/out_of_scope.txt``, written for kgqa).

Removals are made for a disjoint, seeded subset of the questions; the rest stay answerable, except those whose gold
triple fell to another question's removal (left out, and listed in the manifest). The output is a question file
(KgCLUE's lines plus ``"kind"``; an unanswerable line has ``"answer": null`` and what was removed) and the reduced
KB, gzip, byte-identical for the same inputs and seed.
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from kgqa.data.knowledge import SkipCounter, Triple, iter_triples, split_head
from kgqa.data.questions import Question
from kgqa.data.report import sha256_file

OUT_OF_SCOPE_FILE = Path(__file__).with_name("resources") / "out_of_scope.txt"
MIX_QUESTIONS = "questions.json"
MIX_KB = "knowledge.tsv.gz"
MIX_MANIFEST = "manifest.json"


def read_out_of_scope(path: str | Path = OUT_OF_SCOPE_FILE) -> list[tuple[str, str]]:
    """(question, section) pairs of the out-of-scope file: ``## section`` lines name what follows, ``#`` comments."""
    pairs, section = [], ""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("##"):
            section = line.lstrip("#").strip()
        elif line and not line.startswith("#"):
            pairs.append((line, section))
    return pairs


@dataclass(frozen=True)
class MixPlan:
    """Which questions become unanswerable, and what that removes from the KB."""

    entity: list[Question]
    relation: list[Question]
    answerable: list[Question]
    left_out: list[Question]  # answerable once, but their gold triple fell to another question's removal

    @cached_property
    def removed_names(self) -> set[str]:
        return {split_head(q.answer.subject)[0] for q in self.entity}  # type: ignore[union-attr]

    @cached_property
    def removed_relations(self) -> set[tuple[str, str]]:
        return {(split_head(q.answer.subject)[0], q.answer.predicate) for q in self.relation}  # type: ignore[union-attr]

    def removes(self, head: str, relation: str) -> bool:
        name = split_head(head)[0]
        return name in self.removed_names or (name, relation) in self.removed_relations


def plan_mix(
    questions: Sequence[Question],
    relations_of_name: dict[str, set[str]],
    entity_share: float,
    relation_share: float,
    seed: int,
) -> MixPlan:
    """Draw the entity-missing and relation-missing questions (disjoint; a relation-missing question's name must
    keep another relation, and is no entity-missing question's), then sort the rest into answerable and left out.
    ``relations_of_name``: every relation of each gold name in the KB, over all its homonyms."""
    with_answer = [q for q in questions if q.answer is not None]
    order = list(range(len(with_answer)))
    random.Random(seed).shuffle(order)
    n_entity = round(entity_share * len(with_answer))
    n_relation = round(relation_share * len(with_answer))
    entity: list[Question] = []
    relation: list[Question] = []
    entity_names: set[str] = set()
    removed: dict[str, set[str]] = defaultdict(set)  # relations removed so far, by name
    for i in order:
        q = with_answer[i]
        name, relation_name = split_head(q.answer.subject)[0], q.answer.predicate  # type: ignore[union-attr]
        if len(entity) < n_entity:
            entity.append(q)
            entity_names.add(name)
        elif (
            len(relation) < n_relation
            and name not in entity_names
            and relations_of_name.get(name, set()) - removed[name] - {relation_name}
        ):
            relation.append(q)
            removed[name].add(relation_name)
    chosen = {id(q) for q in entity + relation}
    plan = MixPlan(entity, relation, [], [])
    for q in with_answer:
        if id(q) in chosen:
            continue
        (plan.left_out if plan.removes(q.answer.subject, q.answer.predicate) else plan.answerable).append(q)  # type: ignore[union-attr]
    return plan


def make_mix(
    questions: Sequence[Question],
    kb_files: Sequence[str | Path],
    out_dir: str | Path,
    seed: int = 0,
    entity_share: float = 0.15,
    relation_share: float = 0.15,
    out_of_scope: str | Path = OUT_OF_SCOPE_FILE,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``questions.json``, ``knowledge.tsv.gz`` (the KB without the removed triples) and ``manifest.json``
    into ``out_dir``; returns the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {split_head(q.answer.subject)[0] for q in questions if q.answer is not None}
    relations_of_name: dict[str, set[str]] = defaultdict(set)
    for triple in _triples(kb_files, "reading the KB", progress):
        name = split_head(triple.head)[0]
        if name in names:
            relations_of_name[name].add(triple.relation)
    plan = plan_mix(questions, relations_of_name, entity_share, relation_share, seed)

    removed, kept, skipped = 0, 0, SkipCounter()
    # mtime 0 and no file name in the gzip header: the same inputs give the same bytes
    with open(out_dir / MIX_KB, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
        for triple in _triples(kb_files, "writing the reduced KB", progress, skipped):
            if plan.removes(triple.head, triple.relation):
                removed += 1
                continue
            gz.write(("\t".join(triple) + "\n").encode("utf-8"))
            kept += 1

    scope = read_out_of_scope(out_of_scope)
    with open(out_dir / MIX_QUESTIONS, "w", encoding="utf-8") as f:
        for kind, group in (("answerable", plan.answerable), ("entity", plan.entity), ("relation", plan.relation)):
            for q in sorted(group, key=_id_key):
                answer = q.answer.format() if kind == "answerable" else None  # type: ignore[union-attr]
                line = {"id": q.id, "question": q.question, "answer": answer, "kind": kind}
                if kind != "answerable":
                    line["removed"] = q.answer.format()  # type: ignore[union-attr]
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        for i, (text, section) in enumerate(scope):
            line = {"id": f"oos-{i:04d}", "question": text, "answer": None, "kind": "out_of_scope", "section": section}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")

    manifest = {
        "seed": seed,
        "entity_share": entity_share,
        "relation_share": relation_share,
        "source_questions": len(questions),
        "counts": {
            "answerable": len(plan.answerable),
            "entity": len(plan.entity),
            "relation": len(plan.relation),
            "out_of_scope": len(scope),
            "left_out": len(plan.left_out),
        },
        "left_out_ids": [q.id for q in sorted(plan.left_out, key=_id_key)],
        "kb_files": [Path(p).name for p in kb_files],
        "kb_triples_kept": kept,
        "kb_triples_removed": removed,
        "kb_lines_skipped": skipped.skipped_total,
        "out_of_scope_sha256": sha256_file(out_of_scope),
        "files": {name: sha256_file(out_dir / name) for name in (MIX_QUESTIONS, MIX_KB)},
    }
    (out_dir / MIX_MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return manifest


def _triples(
    kb_files: Sequence[str | Path], what: str, progress: bool, counter: SkipCounter | None = None
) -> Iterator[Triple]:
    sizes = [Path(p).stat().st_size for p in kb_files]
    with tqdm(total=sum(sizes), desc=what, unit="B", unit_scale=True, disable=not progress) as bar:
        for done, path in zip(itertools.accumulate([0, *sizes]), kb_files, strict=False):
            yield from iter_triples(path, counter, lambda position, done=done: bar.update(done + position - bar.n))


def _id_key(q: Question) -> tuple[int, str]:
    return (0, f"{q.id:012d}") if isinstance(q.id, int) else (1, str(q.id))
