"""The parent of ``kgqa serve``'s workers: forks them from the loaded engine, replaces one that dies after it served,
stops the service when one dies before it was ready (another would too), and reloads by generations."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kgqa.service.settings import ServiceSettings
from kgqa.service.worker import die_with_parent, run_uvicorn

if TYPE_CHECKING:
    import uvicorn

    from kgqa.service.engine import Engine

log = logging.getLogger("kgqa.service")

READY = struct.Struct("=i")  # a worker's "I serve": its pid, written whole to the pipe (shorter than PIPE_BUF)
POLL_S = 0.05  # how often the parent looks at its workers and signals
DRAIN_S = 2.0  # a retiring worker's responses close their connections this long before it stops (a client that
# sends back to back gets its answer and reconnects, to a new worker; one idle longer meets the usual close)


@dataclass
class _Worker:
    number: int
    generation: int  # the engine it serves: a reload starts the next generation
    ready: bool = False  # it has answered its warm-up question and serves


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
        # each worker writes its pid here once it serves: one that dies before is not replaced (another would too)
        self._ready_read, self._ready_write = os.pipe()
        os.set_blocking(self._ready_read, False)

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
        os.close(self._ready_read)
        os.close(self._ready_write)
        return 1 if self.failed else 0

    def _spawn(self, number: int, generation: int) -> int:
        ready_write = self._ready_write
        config = self.make_config(self.engine, on_ready=lambda: os.write(ready_write, READY.pack(os.getpid())))
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the parent reloads; a worker is replaced, not reloaded
                signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # until the app's drain handler is in place
                die_with_parent(self.parent)
                code = 0 if run_uvicorn(config, self.sock) else 1
            finally:
                os._exit(code)
        self.children[pid] = _Worker(number, generation)
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

    def _read_ready(self) -> None:
        """Mark the workers that said they serve (pids from the pipe, without waiting)."""
        while True:
            try:
                data = os.read(self._ready_read, 4096 * READY.size)
            except BlockingIOError:
                return
            for (pid,) in READY.iter_unpack(data):
                if pid in self.children:
                    self.children[pid].ready = True

    def _reap(self) -> list[int]:
        """Collect exited workers (without waiting); replace those of the serving generation. Returns their pids."""
        self._read_ready()  # first: a worker that served and then died is replaced
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
            if not worker.ready:
                # dying before it served: another would too; stop rather than fork in a loop
                log.error(
                    "worker %d (pid %d) exited with status %d before it was ready; stopping",
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
        new = [self._spawn(n, new_generation) for n in range(self.settings.workers)]
        if not self._wait_ready(new):
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

    def _wait_ready(self, new: list[int]) -> bool:
        """Until every new worker has said it is ready; False if one exits, the time runs out or the service stops."""
        deadline = time.monotonic() + self.settings.reload_timeout_s
        while True:
            if set(self._reap()) & set(new):
                return False
            if all(pid in self.children and self.children[pid].ready for pid in new):
                return True
            if self.stopping or time.monotonic() > deadline:
                return False
            select.select([self._ready_read], [], [], POLL_S)


def _mark_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
