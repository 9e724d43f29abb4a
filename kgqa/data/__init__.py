"""KgCLUE question files, knowledge files and the official metrics. Imports nothing else of kgqa."""

from kgqa.data.knowledge import SkipCounter, Triple, iter_triples, join_head, split_head
from kgqa.data.metrics import METRIC_KEYS, evaluate_answers, f1_sim, lcs_length, normalize
from kgqa.data.questions import MAX_QUESTION_CHARS, Answer, Question, parse_answer, read_questions

__all__ = [
    "MAX_QUESTION_CHARS",
    "METRIC_KEYS",
    "Answer",
    "Question",
    "SkipCounter",
    "Triple",
    "evaluate_answers",
    "f1_sim",
    "iter_triples",
    "join_head",
    "lcs_length",
    "normalize",
    "parse_answer",
    "read_questions",
    "split_head",
]
