"""Continuous batching: questions from concurrent requests join a running search between its steps and leave it when
they are answered, as TGI's router and vLLM's scheduler run their decodes. Decoding runs in one worker thread (one
model per process; torch parallelises inside a step), never on the event loop.

When the search is idle, the first question waits up to ``max_wait_s`` for others to start with it; while it runs,
whatever arrives joins at the next step. So a single question sent beside a wide request is not held for the wide
one's whole decode: it joins within a step and leaves when its own search ends.

Questions are admitted round-robin over requests, one question of each waiting request in turn: a request of 256
questions takes its share of the running search, and a single question sent meanwhile joins beside it instead of
waiting behind all 256. The running search holds at most ``max_batch_size`` questions and at most ``max_batch_cost``
beam-characters (each question costs its beam width times its length, plus ``COST_OVERHEAD_CHARS``; the first
always goes in): a step's time grows with its rows, and every question in the search waits for each step.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from kgqa.model.candidate import Candidate


class QuestionRun(Protocol):
    """Questions that join between steps and leave answered (``kgqa.model.answerer.AnswerRun``)."""

    @property
    def active(self) -> int: ...

    def add(self, questions: Sequence[str], top_ks: Sequence[int]) -> list[int]: ...

    def step(self) -> dict[int, list[Candidate]]: ...

    def drop(self, ids: Sequence[int]) -> None: ...


BeamWidthFn = Callable[[int], int]


class QueueFullError(RuntimeError):
    """More questions are waiting than the service accepts; the client should retry later."""


class DeadlineExceededError(RuntimeError):
    """A request's questions were not all answered within its deadline; those still waiting are dropped."""


class ShuttingDownError(RuntimeError):
    """The service is stopping: a question it could not answer within the grace period; the client should retry."""


COST_OVERHEAD_CHARS = 16  # a question's fixed share of the decoding work (the path decoded, the special tokens)


@dataclass
class _Job:
    question: str
    top_k: int
    future: asyncio.Future[list[Candidate]] = field(repr=False)
    cost: int = 0  # beam-characters: beam width × (length + COST_OVERHEAD_CHARS)


class MicroBatcher:
    def __init__(
        self,
        new_run: Callable[[], QuestionRun],
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        beam_width: BeamWidthFn = lambda top_k: top_k,
        max_batch_cost: int | None = None,
        generation: Callable[[], object] = lambda: None,
        on_step: Callable[[int, float], None] | None = None,
        on_queue_depth: Callable[[int], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        thread_setup: Callable[[], None] | None = None,
    ) -> None:
        self._new_run = new_run  # a run over the engine of the moment
        self._generation = generation  # changes when the engine does (a reload): the next run uses the new one
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.beam_width = beam_width  # the decoding's rule (DecodeOptions.beam_width): top_k → beam
        self.max_batch_cost = max_batch_cost  # beam-characters the running search may hold
        self._on_step = on_step or (lambda size, seconds: None)
        self._on_queue_depth = on_queue_depth or (lambda depth: None)
        self._on_idle = on_idle or (lambda: None)  # in the decoding thread, when the search has emptied
        self._requests: deque[deque[_Job]] = deque()  # each request's questions still waiting, served in turn
        self._waiting = 0
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="kgqa-decode", initializer=thread_setup or (lambda: None)
        )
        self._task: asyncio.Task[None] | None = None
        self._run: QuestionRun | None = None
        self._run_generation: object = None
        self._active: dict[int, _Job] = {}  # the questions in the running search, by their id there
        self._joining: list[_Job] = []  # the questions joining at the step under way
        self._closing = False  # close() was called: no new questions
        self._cut: asyncio.TimerHandle | None = None  # close()'s grace period, then unanswered questions fail

    @property
    def waiting(self) -> int:
        """Questions waiting to join the search (not those in it)."""
        return self._waiting

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="kgqa-batcher")

    def close(self, grace_s: float | None) -> None:
        """Take no more questions; those not answered within ``grace_s`` (None: no limit) fail with ShuttingDownError,
        whether they still wait or are in the search (which then drops them at its next step)."""
        self._closing = True
        if grace_s is not None and self._cut is None:
            self._cut = asyncio.get_running_loop().call_later(grace_s, self._fail_unanswered)

    def _fail_unanswered(self) -> None:
        error = ShuttingDownError("the service is stopping and could not answer within its grace period")
        joining = self._joining
        for job in [*self._active.values(), *joining, *(job for request in self._requests for job in request)]:
            if not job.future.done():
                job.future.set_exception(error)
        self._requests.clear()  # nothing waits any more (the loop may be inside a step that cannot finish)
        self._waiting = 0

    def _cut_done(self) -> bool:
        return self._cut is not None and self._cut.when() <= asyncio.get_running_loop().time()

    async def stop(self) -> None:
        """Finish what was submitted (what ``close`` cut is not waited for), then stop."""
        while self._waiting or ((self._active or self._joining) and not self._cut_done()):
            await asyncio.sleep(0.01)
        if self._cut is not None:
            self._cut.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # a step cut by close() is not waited for here (its thread ends with it; its results are dropped)
        self._executor.shutdown(wait=not self._cut_done(), cancel_futures=True)

    async def submit(
        self, questions: Sequence[str], top_k: int, timeout_s: float | None = None
    ) -> list[list[Candidate]]:
        """Each question's candidates, in order; QueueFullError when too many are waiting already,
        DeadlineExceededError when not all are answered within ``timeout_s`` (its questions still waiting are dropped).
        """
        if self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running")
        if self._closing:
            raise ShuttingDownError("the service is stopping")
        if self._waiting + len(questions) > self.max_queue:
            raise QueueFullError(f"{self._waiting} questions are waiting (at most {self.max_queue})")
        loop = asyncio.get_running_loop()
        jobs = [_Job(q, top_k, loop.create_future(), self.cost(q, top_k)) for q in questions]
        if jobs:
            self._requests.append(deque(jobs))
            self._waiting += len(jobs)
            self._arrived.set()
        self._on_queue_depth(self._waiting)
        try:
            return list(await asyncio.wait_for(asyncio.gather(*(job.future for job in jobs)), timeout_s))
        except TimeoutError:
            raise DeadlineExceededError(f"{len(jobs)} question(s) not answered within {timeout_s:g} s") from None

    def cost(self, question: str, top_k: int) -> int:
        """A question's share of a step's decoding work, in beam-characters."""
        return self.beam_width(top_k) * (len(question) + COST_OVERHEAD_CHARS)

    def _take(self, budget: float = math.inf) -> _Job | None:
        """The next question, round-robin over the waiting requests; None when none waits or it costs over
        ``budget`` (it stays first in line)."""
        while self._requests:
            if self._requests[0][0].cost > budget and not self._requests[0][0].future.done():
                return None
            request = self._requests.popleft()
            job = request.popleft()
            self._waiting -= 1
            if request:
                self._requests.append(request)  # its next question after every other request's
            if not job.future.done():  # a cancelled request's questions are dropped here
                return job
        return None

    async def _loop(self) -> None:
        while True:
            if not self._active:
                if not self._waiting:
                    self._arrived.clear()
                    await self._arrived.wait()
                    continue
                await self._gather()
            joining = self._admit()
            leaving = [i for i, job in self._active.items() if job.future.done()]  # cancelled, or cut by close()
            for i in leaving:
                del self._active[i]
            if not joining and not self._active:
                continue
            await self._step(joining, leaving)

    async def _gather(self) -> None:
        """The search is idle and a question waits: give others ``max_wait_s`` to start with it."""
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while self._waiting < self.max_batch_size:
            self._arrived.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _admit(self) -> list[_Job]:
        """Waiting questions that join at the next step, within the search's size and cost. A reloaded engine takes
        no question into the old search: it empties first, then a new search starts on the new engine."""
        if self._run is not None and self._run_generation is not self._generation():
            if self._active:
                return []
            self._run = None
        used = sum(job.cost for job in self._active.values())
        budget = (self.max_batch_cost or math.inf) - used if self._active else math.inf
        joining: list[_Job] = []
        while len(self._active) + len(joining) < self.max_batch_size:
            job = self._take(budget)
            if job is None:
                break
            joining.append(job)
            budget = (self.max_batch_cost or math.inf) - used - sum(j.cost for j in joining)
        if not self._waiting:
            self._arrived.clear()
        self._on_queue_depth(self._waiting)
        return joining

    async def _step(self, joining: list[_Job], leaving: list[int]) -> None:
        if self._run is None:
            self._run, self._run_generation = self._new_run(), self._generation()
        run = self._run
        started = time.perf_counter()
        self._joining = joining
        try:
            ids, answered = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._in_thread, run, joining, leaving
            )
        except Exception as exc:  # the search failed: everything in it fails with it, and a new search starts
            for job in [*joining, *self._active.values()]:
                if not job.future.done():
                    job.future.set_exception(exc)
            self._active.clear()
            self._run = None
            return
        finally:
            self._joining = []
        self._active |= dict(zip(ids, joining, strict=True))
        self._on_step(len(self._active), time.perf_counter() - started)
        for i, candidates in answered.items():
            job = self._active.pop(i, None)
            if job is not None and not job.future.done():
                job.future.set_result(candidates)

    def _in_thread(
        self, run: QuestionRun, joining: list[_Job], leaving: list[int]
    ) -> tuple[list[int], dict[int, list[Candidate]]]:
        if leaving:
            run.drop(leaving)
        ids = run.add([job.question for job in joining], [job.top_k for job in joining]) if joining else []
        answered = run.step()
        if not run.active:
            self._on_idle()
        return ids, answered
