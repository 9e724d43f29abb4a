"""Where shards are built: in this process, in ``jobs`` worker processes, or as Ray tasks on a cluster.

Each shard is built from its input file alone (:func:`kgqa.trie.shard.build_shard`), so every engine gives the same
files. At most ``jobs`` shards are in flight at once: that, with the shard size, bounds memory and temporary disk.
Results are taken in shard order; a shard's input is removed as soon as the shard is built.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from kgqa.trie.manifest import IndexBuildError
from kgqa.trie.runs import ShardInput
from kgqa.trie.shard import ShardSummary, build_shard

ENGINES = ("local", "ray")
_PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies


def build_shards(
    inputs: Iterable[ShardInput],
    shard_dir: Callable[[int], Path],
    heavy_threshold: int,
    engine: str = "local",
    jobs: int = 1,
    ray_address: str | None = None,
    on_built: Callable[[], None] | None = None,
) -> list[ShardSummary]:
    """Build every shard of ``inputs`` (consumed as they come) into ``shard_dir(number)``; their summaries in order."""
    runner = _RayRunner(ray_address) if engine == "ray" else _PoolRunner(jobs) if jobs > 1 else _InlineRunner()
    summaries: list[ShardSummary] = []
    pending: deque[tuple[ShardInput, Any]] = deque()

    def finish_oldest() -> None:
        shard, handle = pending.popleft()
        summaries.append(runner.result(handle))
        shard.path.unlink()
        if on_built is not None:
            on_built()

    try:
        for shard in inputs:
            args = (shard.number, str(shard.path), str(shard_dir(shard.number)), heavy_threshold)
            pending.append((shard, runner.submit(args)))
            while len(pending) > jobs:
                finish_oldest()
        while pending:
            finish_oldest()
    except BrokenProcessPool as exc:  # noticed at a result or at the next submit
        runner.terminate()
        raise IndexBuildError(
            "a worker building a shard died (killed, perhaps by the OOM killer); build again with a smaller "
            "--memory-budget or fewer --jobs"
        ) from exc
    except BaseException:
        runner.terminate()
        raise
    runner.close()
    return summaries


class _InlineRunner:
    def submit(self, args: tuple) -> ShardSummary:
        return build_shard(*args)

    def result(self, handle: ShardSummary) -> ShardSummary:
        return handle

    def close(self) -> None:
        pass

    def terminate(self) -> None:
        pass


class _PoolRunner:
    """Worker processes started fresh (spawn: they hold nothing of this process's memory) that die with it; a worker
    that dies mid-shard (the OOM killer) fails the build (BrokenProcessPool) rather than hanging it."""

    def __init__(self, jobs: int) -> None:
        self.executor = ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent, initargs=(os.getpid(),)
        )

    def submit(self, args: tuple) -> Future:
        return self.executor.submit(build_shard, *args)

    def result(self, handle: Future) -> ShardSummary:
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
    """Shards as Ray tasks: on this machine, or on a cluster whose nodes all see the spill and index directories at
    the same paths (shared storage); the results (counts, the heavy-prefix reports) come back to this process, which
    writes the heavy table and the manifest."""

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
        self.task = ray.remote(num_cpus=1, max_retries=1)(build_shard)
        self.handles: list[Any] = []

    def submit(self, args: tuple) -> Any:
        handle = self.task.remote(*args)
        self.handles.append(handle)
        return handle

    def result(self, handle: Any) -> ShardSummary:
        return self.ray.get(handle)

    def close(self) -> None:
        pass

    def terminate(self) -> None:
        for handle in self.handles:
            with contextlib.suppress(Exception):  # a finished task: nothing to cancel; the build's own error matters
                self.ray.cancel(handle, force=True)
