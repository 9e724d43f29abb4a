"""``kgqa serve``: load once, then serve with uvicorn in one process or in N forked workers.

The model and the index are loaded (and checked: a mismatch fails here, before any port is bound) in the parent;
workers are forked from it, so they share its memory copy-on-write — torch, the weights, the constraint tables —
and the memory-mapped index through the page cache. The parent binds the socket, forks, forwards SIGTERM/SIGINT
(uvicorn in each worker then finishes in-flight requests), and replaces a worker that dies.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import TYPE_CHECKING

from kgqa.service.settings import ServiceSettings

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("kgqa.service")

PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies
WORKER_MIN_LIFETIME_S = 10.0  # a worker that dies sooner is not replaced: the service stops


def serve(settings: ServiceSettings) -> int:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # before prometheus_client is imported: every worker's samples go to files /metrics sums up
        metrics_dir = tempfile.mkdtemp(prefix="kgqa-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)

    import torch
    import uvicorn

    from kgqa.service.app import create_app
    from kgqa.service.engine import Engine

    # No torch thread pool in this thread: OpenMP pools do not survive fork, and a second pool beside the decoding
    # thread's (which sets its own size) halves decoding speed on 2 cores. All decoding runs in that thread.
    torch.set_num_threads(1)
    started = time.perf_counter()
    engine = Engine.load(settings)  # StartupError propagates to the CLI, which prints it and exits 2
    log.info(
        "loaded %s and %s in %.1f s (%s)",
        settings.model,
        settings.index,
        time.perf_counter() - started,
        "int8 Linear layers" if engine.quantized else "float32",
    )
    config = uvicorn.Config(
        create_app(settings, engine),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=settings.graceful_shutdown_s or None,
    )
    sock = listening_socket(config)
    host, port = sock.getsockname()[:2]
    print(f"kgqa serving on http://{host}:{port} (API docs at http://{host}:{port}/docs)", flush=True)
    if settings.workers == 1:
        return 0 if _run_uvicorn(config, sock) else 1
    return _supervise(settings, config, sock)


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


def _supervise(settings: ServiceSettings, config: object, sock: socket.socket) -> int:
    children: dict[int, tuple[int, float]] = {}  # pid → (worker number, when it started)
    stopping = False

    parent = os.getpid()

    def spawn(number: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _die_with_parent(parent)
                code = 0 if _run_uvicorn(config, sock) else 1
            finally:
                os._exit(code)
        children[pid] = (number, time.monotonic())

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    # Move everything loaded so far out of the garbage collector's reach: its passes write to every object's header,
    # which would copy each page of the parent's heap into every worker.
    gc.collect()
    gc.freeze()
    failed = False
    for number in range(settings.workers):
        spawn(number)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        found = children.pop(pid, None)
        if found is None:
            continue
        number, started = found
        _mark_dead(pid)
        if stopping:
            continue
        if time.monotonic() - started < WORKER_MIN_LIFETIME_S:
            # dying as it starts: another would too; stop rather than fork in a loop
            log.error("worker %d (pid %d) exited with status %d right after starting; stopping", number, pid, status)
            stop(signal.SIGTERM, None)
            failed = True
            continue
        log.warning("worker %d (pid %d) exited with status %d; starting another", number, pid, status)
        spawn(number)
    sock.close()
    return 1 if failed else 0


def _run_uvicorn(config: object, sock: socket.socket) -> bool:
    """Serve until stopped; False if the app never started (uvicorn has logged why)."""
    import uvicorn

    # uvicorn catches SIGTERM/SIGINT, lets in-flight requests finish, then re-raises the signal with the handlers it
    # found: these, so that a graceful stop exits 0 rather than "killed by SIGTERM"
    signal.signal(signal.SIGTERM, _after_graceful_stop)
    signal.signal(signal.SIGINT, _after_graceful_stop)
    server = uvicorn.Server(config)  # type: ignore[arg-type]
    server.run(sockets=[sock])
    sys.stdout.flush()
    return server.started


def _die_with_parent(parent: int) -> None:
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


def _mark_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
