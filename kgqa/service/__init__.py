"""The FastAPI question-answering service. Uses every other room."""
