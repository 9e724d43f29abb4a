"""The API's fixed request limits: part of the OpenAPI schema (static), so constants, not settings."""

MAX_QUESTION_CHARS = 256
MAX_TOP_K = 20
MAX_BATCH_QUESTIONS = 256
