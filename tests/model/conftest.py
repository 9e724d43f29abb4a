"""The model tests use the tiny KB, questions and model of tests/conftest.py."""
