"""What a question answerer returns: a KB path, its object and a score."""

from __future__ import annotations

from dataclasses import dataclass

from kgqa.data import Answer, join_head


@dataclass(frozen=True)
class Candidate:
    name: str
    relation: str
    meaning: str
    object: str
    score: float

    @property
    def subject(self) -> str:
        """The KB head: ``name（meaning）``, or the name alone."""
        return join_head(self.name, self.meaning)

    def as_answer(self) -> Answer:
        return Answer(self.subject, self.relation, self.object)
