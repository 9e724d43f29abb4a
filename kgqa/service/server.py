"""``kgqa serve``: load once, then serve with uvicorn in one process or in N forked workers.

The model and the index are loaded (and checked: a mismatch fails here, before any port is bound) in the parent;
workers are forked from it, so they share its memory copy-on-write — the weights, the graphs, the constraint tables —
and the memory-mapped index through the page cache. The parent binds the socket, forks, forwards SIGTERM/SIGINT
(uvicorn in each worker then finishes in-flight requests), and replaces a worker that dies.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from kgqa.service.logs import configure_logging
from kgqa.service.settings import ServiceSettings
from kgqa.service.supervisor import Supervisor
from kgqa.service.worker import run_uvicorn

if TYPE_CHECKING:
    import uvicorn

    from kgqa.service.engine import Engine

log = logging.getLogger("kgqa.service")

SHUTDOWN_REPLY_S = 5.0  # after the grace period: time to write the 503s of questions that were cut


def serve(settings: ServiceSettings) -> int:
    configure_logging(settings.log_level, settings.log_format)
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # before prometheus_client is imported: every worker's samples go to files /metrics sums up
        metrics_dir = tempfile.mkdtemp(prefix="kgqa-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)

    import uvicorn

    from kgqa.service.app import create_app
    from kgqa.service.engine import Engine

    if settings.runtime == "torch":
        import torch

        # No torch thread pool in this thread: OpenMP pools do not survive fork, and a second pool beside the decoding
        # thread's (which sets its own size) halves decoding speed on 2 cores. All decoding runs in that thread.
        torch.set_num_threads(1)
    # until the reload handler is in place (the event loop's, or the supervisor's), a SIGHUP must not end the service
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    started = time.perf_counter()
    engine = Engine.load(settings)  # StartupError propagates to the CLI, which prints it and exits 2
    log.info(
        "loaded %s and %s in %.1f s (%s)",
        settings.model,
        settings.index,
        time.perf_counter() - started,
        f"{engine.answerer.runtime.name}, {'int8' if engine.quantized else 'float32'}",
    )

    def make_config(
        engine: Engine, reload_on_sighup: bool = False, on_ready: Callable[[], None] | None = None
    ) -> uvicorn.Config:
        # one process reloads itself on SIGHUP; forked workers drain on SIGUSR1 before a reload retires them
        worker = settings.workers > 1
        return uvicorn.Config(
            create_app(settings, engine, reload_on_sighup=reload_on_sighup, on_ready=on_ready, drain_on_sigusr1=worker),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            log_config=None,  # uvicorn's lines go through configure_logging's handler (text or JSON)
            access_log=False,  # kgqa.service.access writes the access log, with request ids
            # past the grace period the app answers what is left with 503 (ServiceState.begin_shutdown); uvicorn waits
            # a little longer for those answers to be written, so it never cancels a request into a 500
            timeout_graceful_shutdown=settings.graceful_shutdown_s + SHUTDOWN_REPLY_S
            if settings.graceful_shutdown_s
            else None,
        )

    sock = listening_socket(make_config(engine))
    host, port = sock.getsockname()[:2]
    print(f"kgqa serving on http://{host}:{port} (API docs at http://{host}:{port}/docs)", flush=True)
    if settings.workers == 1:
        # as the supervisor before forking: what is loaded lives on, and full collections over it would pause answering
        gc.collect()
        gc.freeze()
        return 0 if run_uvicorn(make_config(engine, reload_on_sighup=True), sock) else 1
    return Supervisor(settings, make_config, engine, sock).run()


def listening_socket(config: uvicorn.Config) -> socket.socket:
    """The bound socket, its connections without Nagle's algorithm.

    uvicorn's bind_socket makes a socket of protocol 0, on whose connections asyncio does not set TCP_NODELAY (it
    does for IPPROTO_TCP sockets); a response written in two parts then waits ~40 ms for the client's delayed ACK.
    Accepted connections inherit the option from the listening socket.
    """
    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
