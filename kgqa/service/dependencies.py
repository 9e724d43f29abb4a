"""What routes depend on (FastAPI ``Depends``): the ready state of this worker, and the API key when one is set."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kgqa.service.batcher import ShuttingDownError
from kgqa.service.state import ServiceState

_bearer = HTTPBearer(
    auto_error=False,
    description="Set when the service runs with KGQA_API_KEY: `Authorization: Bearer <key>` on every /v1 route",
)


async def service_state(request: Request) -> ServiceState:
    return request.app.state.kgqa


async def ready_state(state: Annotated[ServiceState, Depends(service_state)]) -> ServiceState:
    """The state, once the engine is loaded and warmed up; 503 before, and once the service is stopping."""
    if state.stopping:  # answered by the one ShuttingDownError handler (kgqa.service.errors): 503, Retry-After
        raise ShuttingDownError("the service is stopping")
    if not state.ready or state.engine is None or state.batcher is None:
        raise HTTPException(503, "the model is still loading; retry shortly (GET /readyz says when it is ready)")
    return state


async def require_api_key(
    state: Annotated[ServiceState, Depends(service_state)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """With KGQA_API_KEY set, 401 unless the request carries ``Authorization: Bearer <that key>``."""
    key = state.settings.api_key
    if key is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), key.get_secret_value().encode()):
        problem = "a wrong API key" if credentials is not None else "no API key"
        raise HTTPException(
            401,
            f"{problem}: send the service's key (KGQA_API_KEY) as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


ReadyState = Annotated[ServiceState, Depends(ready_state)]
