"""The FastAPI question-answering service (the service issue). Uses every other room."""
