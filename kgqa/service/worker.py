"""A worker of ``kgqa serve``: uvicorn on the shared listening socket, stopped gracefully by SIGTERM/SIGINT, and never
outliving the process that forked it."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType

    import uvicorn

    from kgqa.service.state import ServiceState

log = logging.getLogger("kgqa.service")

PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies


def run_uvicorn(config: object, sock: socket.socket) -> bool:
    """Serve until stopped; False if the app never started (uvicorn has logged why)."""
    # uvicorn catches SIGTERM/SIGINT, lets in-flight requests finish, then re-raises the signal with the handlers it
    # found: these, so that a graceful stop exits 0 rather than "killed by SIGTERM"
    signal.signal(signal.SIGTERM, _after_graceful_stop)
    signal.signal(signal.SIGINT, _after_graceful_stop)
    server = graceful_server_class()(config)  # type: ignore[arg-type]
    server.run(sockets=[sock])
    sys.stdout.flush()
    return server.started


def graceful_server_class() -> type[uvicorn.Server]:
    import uvicorn

    class _GracefulServer(uvicorn.Server):
        """uvicorn's server that tells the app when a stop signal arrives, before uvicorn stops accepting, and lets
        the app stop accepting itself (a worker that drains before a reload retires it)."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            state = self._app_state()
            if state is not None:
                state.request_shutdown()
            super().handle_exit(sig, frame)

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            state = self._app_state()
            if state is not None:
                loop = asyncio.get_running_loop()
                state.stop_accepting = lambda: self._stop_accepting(loop)

        def _stop_accepting(self, loop: asyncio.AbstractEventLoop) -> None:
            # This process stops watching the shared listening socket; the other workers keep accepting on it.
            # Not server.close(): a connection accepted just before would then fail to attach to the closed server
            # (asyncio asserts it is open) and its client would get a reset. uvicorn closes the socket at shutdown.
            for server in self.servers:
                for sock in server.sockets:
                    loop.remove_reader(sock.fileno())

        def _app_state(self) -> ServiceState | None:
            return getattr(getattr(self.config.app, "state", None), "kgqa", None)

    return _GracefulServer


def die_with_parent(parent: int) -> None:
    """A worker never outlives its parent, whatever ends the parent (SIGKILL, the OOM killer): on Linux the kernel
    sends the worker SIGTERM when the parent dies (PR_SET_PDEATHSIG) — a graceful stop — and a parent that died
    before this was set is noticed here (the worker then has another parent)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("PR_SET_PDEATHSIG failed (errno %d): this worker may outlive its parent", ctypes.get_errno())
    if os.getppid() != parent:
        os._exit(0)


def _after_graceful_stop(signum: int, frame: object) -> None:
    log.info("stopped (signal %d)", signum)
