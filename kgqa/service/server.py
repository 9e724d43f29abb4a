"""``kgqa serve``: load once, then serve with uvicorn in one process or in N forked workers.

The model and the index are loaded (and checked: a mismatch fails here, before any port is bound) in the parent;
workers are forked from it, so they share its memory copy-on-write — torch, the weights, the constraint tables —
and the memory-mapped index through the page cache. The parent binds the socket, forks, forwards SIGTERM/SIGINT
(uvicorn in each worker then finishes in-flight requests), and replaces a worker that dies.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import gc
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kgqa.service.logs import configure_logging
from kgqa.service.settings import ServiceSettings

if TYPE_CHECKING:
    from types import FrameType

    import uvicorn

    from kgqa.service.engine import Engine
    from kgqa.service.state import ServiceState

log = logging.getLogger("kgqa.service")

PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies
WORKER_MIN_LIFETIME_S = 10.0  # a worker that dies sooner is not replaced: the service stops
POLL_S = 0.05  # how often the parent looks at its workers and signals
SHUTDOWN_REPLY_S = 5.0  # after the grace period: time to write the 503s of questions that were cut
DRAIN_S = 2.0  # a retiring worker's responses close their connections this long before it stops (a client that
# sends back to back gets its answer and reconnects, to a new worker; one idle longer meets the usual close)


def serve(settings: ServiceSettings) -> int:
    configure_logging(settings.log_level, settings.log_format)
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
    # until the reload handler is in place (the event loop's, or the supervisor's), a SIGHUP must not end the service
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    started = time.perf_counter()
    engine = Engine.load(settings)  # StartupError propagates to the CLI, which prints it and exits 2
    log.info(
        "loaded %s and %s in %.1f s (%s)",
        settings.model,
        settings.index,
        time.perf_counter() - started,
        "int8 Linear layers" if engine.quantized else "float32",
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
        return 0 if _run_uvicorn(make_config(engine, reload_on_sighup=True), sock) else 1
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


@dataclass(frozen=True)
class _Worker:
    number: int
    started: float  # time.monotonic()
    generation: int  # the engine it serves: a reload starts the next generation


class Supervisor:
    """Forks the workers and watches them: SIGTERM/SIGINT stop them gracefully, SIGHUP reloads, a dead worker is
    replaced.

    A reload loads and checks the configured index and model in the parent, as at start-up, forks a new generation
    of workers from it, waits until each has answered its warm-up question, and only then retires the old workers
    with SIGTERM (uvicorn lets their in-flight requests finish; the shared listening socket keeps accepting through
    the new ones). A reload that fails anywhere (load, checks, a new worker not ready within ``reload_timeout_s``)
    leaves the old generation serving and logs why.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        make_config: Callable[..., uvicorn.Config],
        engine: Engine,
        sock: socket.socket,
    ) -> None:
        self.settings = settings
        self.make_config = make_config
        self.engine = engine
        self.sock = sock
        self.parent = os.getpid()
        self.children: dict[int, _Worker] = {}
        self.generation = 0
        self.stopping = False
        self.reload_requested = False
        self.failed = False

    def run(self) -> int:
        self._freeze()
        for number in range(self.settings.workers):
            self._spawn(number, self.generation)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._request_reload)
        while self.children:
            self._reap()
            if self.reload_requested and not self.stopping:
                self.reload_requested = False
                self._reload()
            time.sleep(POLL_S)
        self.sock.close()
        return 1 if self.failed else 0

    def _spawn(self, number: int, generation: int, ready_fd: int | None = None) -> int:
        on_ready = (lambda: os.write(ready_fd, b"r")) if ready_fd is not None else None
        config = self.make_config(self.engine, on_ready=on_ready)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the parent reloads; a worker is replaced, not reloaded
                signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # until the app's drain handler is in place
                _die_with_parent(self.parent)
                code = 0 if _run_uvicorn(config, self.sock) else 1
            finally:
                os._exit(code)
        self.children[pid] = _Worker(number, time.monotonic(), generation)
        return pid

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True
        self._terminate(list(self.children))

    def _request_reload(self, signum: int, frame: object) -> None:
        self.reload_requested = True

    @staticmethod
    def _signal(pids: list[int], signum: int) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _terminate(self, pids: list[int]) -> None:
        self._signal(pids, signal.SIGTERM)

    def _freeze(self) -> None:
        # Move everything loaded so far out of the garbage collector's reach: its passes write to every object's
        # header, which would copy each page of the parent's heap into every worker.
        gc.collect()
        gc.freeze()

    def _reap(self) -> list[int]:
        """Collect exited workers (without waiting); replace those of the serving generation. Returns their pids."""
        reaped = []
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            worker = self.children.pop(pid, None)
            if worker is None:
                continue
            reaped.append(pid)
            _mark_dead(pid)
            if self.stopping or worker.generation != self.generation:
                continue  # stopping, retired by a reload, or a new worker of a reload that failed
            if time.monotonic() - worker.started < WORKER_MIN_LIFETIME_S:
                # dying as it starts: another would too; stop rather than fork in a loop
                log.error(
                    "worker %d (pid %d) exited with status %d right after starting; stopping",
                    worker.number,
                    pid,
                    status,
                )
                self._stop(signal.SIGTERM, None)
                self.failed = True
                continue
            log.warning("worker %d (pid %d) exited with status %d; starting another", worker.number, pid, status)
            self._spawn(worker.number, self.generation)
        return reaped

    def _reload(self) -> None:
        from kgqa.service.reload import load_for_reload, reload_done, reload_failed

        started = time.perf_counter()
        log.info("SIGHUP: reloading %s and %s", self.settings.index, self.settings.model)
        old_engine, old_workers = (
            self.engine,
            [pid for pid, w in self.children.items() if w.generation == self.generation],
        )
        engine = load_for_reload(self.settings, warm_up=False)  # each new worker warms up before it says ready
        if engine is None:
            return
        self.engine = engine
        self._freeze()
        new_generation = self.generation + 1
        read_fd, write_fd = os.pipe()
        try:
            new = [self._spawn(n, new_generation, write_fd) for n in range(self.settings.workers)]
            os.close(write_fd)
            ready = self._wait_ready(read_fd, new)
        finally:
            os.close(read_fd)
        if not ready:
            self._terminate(new)
            self.engine = old_engine
            if not self.stopping:
                reload_failed("the new workers did not get ready")
            return
        self.generation = new_generation  # from here, the old workers are retired, not replaced
        # counted and logged once the new workers serve; the old ones then drain and stop
        reload_done(engine, started, f" ({len(new)} new workers; {len(old_workers)} old ones retire)")
        self._retire(old_workers)
        del old_engine
        gc.collect()

    def _retire(self, pids: list[int]) -> None:
        """Drain (each response closes its keep-alive connection), then SIGTERM: in-flight requests finish."""
        self._signal(pids, signal.SIGUSR1)
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline and not self.stopping:
            self._reap()
            time.sleep(POLL_S)
        self._terminate(pids)

    def _wait_ready(self, read_fd: int, new: list[int]) -> bool:
        """Until every new worker has said it is ready; False if one exits, the time runs out or the service stops."""
        deadline = time.monotonic() + self.settings.reload_timeout_s
        ready = 0
        while ready < len(new):
            if self.stopping or time.monotonic() > deadline:
                return False
            if set(self._reap()) & set(new):
                return False
            readable, _, _ = select.select([read_fd], [], [], POLL_S)
            if readable:
                ready += len(os.read(read_fd, len(new)))
        return True


def _run_uvicorn(config: object, sock: socket.socket) -> bool:
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
