"""The API's fixed request limits: part of the OpenAPI schema (static), so constants, not settings."""

from kgqa.data import MAX_QUESTION_CHARS

__all__ = ["MAX_BATCH_QUESTIONS", "MAX_QUESTION_CHARS", "MAX_TOP_K"]
MAX_TOP_K = 20
MAX_BATCH_QUESTIONS = 256
