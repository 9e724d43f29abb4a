"""Answering in worker processes: an answerer's planned batches spread over forked copies of this process.

Answering is largely Python (the search's frontier, the index, the ranker's features): one process keeps about one
core busy whatever torch's thread count. Workers forked after the model is loaded share its pages (copy-on-write) and
the mapped index, run torch on one thread each and answer whole batches of ``batch_plan``: each batch is answered by
the same ``answer`` call as in process, with the same questions in the same order (so the same padding, and under
int8 the same activation scales).

Workers ignore Ctrl-C (the parent stops them) and die with this process however it ends (``die_with_parent``). A
model on a GPU answers in process: CUDA cannot be used in a forked child.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from tqdm.auto import tqdm

from kgqa.model.answerer import QuestionAnswerer, batch_plan
from kgqa.model.candidate import Candidate
from kgqa.trie.engines import die_with_parent, kill_workers

_answerer: QuestionAnswerer | None = None  # a worker's copy of the parent's answerer
# each worker holds ~0.5 GB of its own (PSS, KgCLUE-sim, batches of 64): more than this many only when asked for
MAX_DEFAULT_WORKERS = 8


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, as a container's cpuset sets it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(answerer: QuestionAnswerer) -> int:
    """One worker per usable CPU (at most ``MAX_DEFAULT_WORKERS``) where processes can be forked; otherwise 1 (in
    process)."""
    forkable = "fork" in multiprocessing.get_all_start_methods()
    return min(usable_cpus(), MAX_DEFAULT_WORKERS) if forkable else 1


def answer_in_workers(
    answerer: QuestionAnswerer,
    questions: Sequence[str],
    workers: int,
    top_k: int = 1,
    progress: bool = False,
) -> list[list[Candidate]]:
    """``answerer.answer(questions, top_k)`` with its batches answered by ``workers`` forked processes (1: in this
    process). RuntimeError when a worker dies (killed, perhaps by the OOM killer)."""
    cleaned = [answerer.options.clean(q) for q in questions]
    plan = batch_plan(cleaned, answerer.options.batch_size)
    workers = min(workers, len(plan))
    if workers <= 1:
        return answerer.answer(questions, top_k=top_k, progress=progress)
    results: list[list[Candidate]] = [[] for _ in questions]
    executor = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start_worker,
        initargs=(os.getpid(), answerer),
    )
    try:
        pending = {executor.submit(_answer_batch, [questions[i] for i in batch], top_k): batch for batch in plan}
        with tqdm(total=sum(map(len, plan)), desc="answering", unit="q", disable=not progress) as bar:
            for done in as_completed(pending):
                batch = pending[done]
                for i, candidates in zip(batch, done.result(), strict=True):
                    results[i] = candidates
                bar.update(len(batch))
    except BrokenProcessPool as exc:
        kill_workers(executor)
        raise RuntimeError(
            "a worker process answering questions died (killed, perhaps by the OOM killer); run again with fewer "
            "--workers"
        ) from exc
    except BaseException:
        kill_workers(executor)
        raise
    executor.shutdown()
    return results


def _start_worker(parent: int, answerer: QuestionAnswerer) -> None:
    die_with_parent(parent)
    # one core a worker; one thread also keeps a runtime's thread pool, unsafe after fork, unused
    answerer.runtime.layers.set_threads(1)
    # What the worker inherited (the model, the index tables, the word files' structures) is alive until it exits:
    # out of the garbage collector's reach, its full passes no longer walk every inherited object (answering allocates
    # enough to run them often) nor write to their pages' headers (which copies the pages).
    gc.freeze()
    global _answerer
    _answerer = answerer


def _answer_batch(questions: list[str], top_k: int) -> list[list[Candidate]]:
    # one batch of the parent's plan: its questions, already longest first, are planned again as one batch
    assert _answerer is not None
    return _answerer.answer(questions, top_k=top_k)
