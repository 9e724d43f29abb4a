"""Where the build's tasks run (reading a piece of the knowledge files, building a shard): in this process, in
``jobs`` worker processes, or as Ray tasks on a cluster.

Each task reads and writes files only (its inputs, its outputs in the spill or index directory), so every engine gives
the same files. At most ``jobs`` tasks are in flight at once: that, with the task's size, bounds memory and
temporary disk. Results are taken in submission order.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, Protocol

from kgqa.trie.manifest import IndexBuildError

ENGINES = ("local", "ray")
_PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies


class Runner(Protocol):
    in_process: bool  # tasks run in this process (so they may call back into it)

    def submit(self, task: Callable[..., Any], args: tuple) -> Any: ...

    def result(self, handle: Any) -> Any: ...

    def close(self) -> None: ...

    def terminate(self) -> None: ...


@contextmanager
def task_runner(engine: str = "local", jobs: int = 1, ray_address: str | None = None) -> Iterator[Runner]:
    """A runner for the build's tasks, closed at the end; on an error its running tasks are stopped first."""
    runner: Runner = _RayRunner(ray_address) if engine == "ray" else _PoolRunner(jobs) if jobs > 1 else _InlineRunner()
    try:
        yield runner
    except BrokenProcessPool as exc:  # noticed at a result or at the next submit
        runner.terminate()
        raise IndexBuildError(
            "a worker of the index build died (killed, perhaps by the OOM killer); build again with a smaller "
            "--memory-budget or fewer --jobs"
        ) from exc
    except BaseException:
        runner.terminate()
        raise
    runner.close()


def run_in_order(
    runner: Runner,
    task: Callable[..., Any],
    arguments: Iterable[tuple],
    jobs: int,
    on_result: Callable[[tuple, Any], None],
) -> None:
    """Run ``task(*args)`` for each of ``arguments`` (consumed as they come), at most ``jobs`` in flight beyond the
    one being submitted; ``on_result(args, result)`` in the order of ``arguments``."""
    pending: deque[tuple[tuple, Any]] = deque()
    for args in arguments:
        pending.append((args, runner.submit(task, args)))
        while len(pending) > jobs:
            done, handle = pending.popleft()
            on_result(done, runner.result(handle))
    while pending:
        done, handle = pending.popleft()
        on_result(done, runner.result(handle))


class _InlineRunner:
    in_process = True

    def submit(self, task: Callable[..., Any], args: tuple) -> Any:
        return task(*args)

    def result(self, handle: Any) -> Any:
        return handle

    def close(self) -> None:
        pass

    def terminate(self) -> None:
        pass


class _PoolRunner:
    """Worker processes started fresh (spawn: they hold nothing of this process's memory) that die with it; a worker
    that dies mid-shard (the OOM killer) fails the build (BrokenProcessPool) rather than hanging it."""

    in_process = False

    def __init__(self, jobs: int) -> None:
        self.executor = ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent, initargs=(os.getpid(),)
        )

    def submit(self, task: Callable[..., Any], args: tuple) -> Future:
        return self.executor.submit(task, *args)

    def result(self, handle: Future) -> Any:
        return handle.result()

    def close(self) -> None:
        self.executor.shutdown()

    def terminate(self) -> None:
        kill_workers(self.executor)


def kill_workers(executor: ProcessPoolExecutor) -> None:
    """Stop a pool's running tasks: the executor has no public way to, so kill its workers, then reap them."""
    for process in list(getattr(executor, "_processes", {}).values()):
        process.kill()
    executor.shutdown(cancel_futures=True)


def die_with_parent(parent: int) -> None:
    """A pool worker's initializer: it never outlives the parent (the kernel kills it when the parent dies, however
    the parent ends), and work interrupted with Ctrl-C is cleaned up by the parent alone (workers ignore SIGINT and
    are killed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


class _RayRunner:
    """Ray tasks: on this machine, or on a cluster whose nodes all see the knowledge files, the spill and the index
    directories at the same paths (shared storage); the results (runs written, counts, the heavy-prefix reports) come
    back to this process, which merges the runs and writes the heavy table and the manifest."""

    in_process = False

    def __init__(self, address: str | None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise IndexBuildError(
                f"--engine ray needs Ray ({exc.name} is not installed): pip install 'kgqa[ray]'"
            ) from exc
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self.remote: dict[Callable[..., Any], Any] = {}
        self.handles: list[Any] = []

    def submit(self, task: Callable[..., Any], args: tuple) -> Any:
        if task not in self.remote:
            self.remote[task] = self.ray.remote(num_cpus=1, max_retries=1)(task)
        handle = self.remote[task].remote(*args)
        self.handles.append(handle)
        return handle

    def result(self, handle: Any) -> Any:
        return self.ray.get(handle)

    def close(self) -> None:
        pass

    def terminate(self) -> None:
        for handle in self.handles:
            with contextlib.suppress(Exception):  # a finished task: nothing to cancel; the build's own error matters
                self.ray.cancel(handle, force=True)
