"""Micro-batching: questions from concurrent requests are decoded together, off the event loop.

A batch starts when it is full or when its first question has waited ``max_wait_s``; while one batch decodes, the
next fills, so under load batches grow and throughput with them. The wait pays only while questions come together
(clients answered by one batch send their next questions a few milliseconds apart): after a batch of one question, the
next starts at once, so a lone client never waits for company. Decoding runs in one worker thread (one model per
process; torch parallelises inside the batch), never on the event loop.

Batches are filled round-robin over requests, one question of each waiting request in turn, not first come first
served: a request of 256 questions then takes its share of each batch, and a single question sent meanwhile goes
into the next batch instead of waiting behind all 256.

A batch is also bounded by its cost, in beam-characters: each question costs its beam width times its length (plus
``COST_OVERHEAD_CHARS``). Decoding time grows faster than linearly with the beam rows of a batch (on a 2-core CPU, 8
questions of 256 characters at top_k 20 took 9.1 s, one took 0.72 s), so a batch of such questions would hold
every other request for many seconds; under the default budget one of them fills a batch, while 32 KgCLUE-sized
questions at beam 5 still fit in one. Within a batch, the cheapest top_k group decodes first.
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

from kgqa.model.candidate import Candidate

# each question's candidates, up to its own top_k (one per question), decoded with the beam of the largest
AnswerFn = Callable[[Sequence[str], Sequence[int]], list[list[Candidate]]]
BeamWidthFn = Callable[[int], int]


class QueueFullError(RuntimeError):
    """More questions are waiting than the service accepts; the client should retry later."""


class DeadlineExceededError(RuntimeError):
    """A request's questions were not all answered within its deadline; those still waiting are dropped."""


class ShuttingDownError(RuntimeError):
    """The service is stopping: a question it could not answer within the grace period; the client should retry."""


COST_OVERHEAD_CHARS = 16  # a question's fixed share of the decoding work (the path decoded, the special tokens)


@dataclass
class RequestTiming:
    """Where a request's time in the batcher went, in seconds: decoding (``model``: the decodes that held its
    questions, ranking included) and the rest (``queue``: waiting for a batch, or behind other decodes)."""

    queue_s: float = 0.0
    model_s: float = 0.0
    batches: int = 0  # decodes that held its questions

    def server_timing(self, handler_s: float) -> str:
        """A ``Server-Timing`` header value (W3C; durations in ms): queue, model and the whole handler."""
        parts = (("queue", self.queue_s), ("model", self.model_s), ("app", handler_s))
        return ", ".join(f"{name};dur={1000 * seconds:.2f}" for name, seconds in parts)


@dataclass(eq=False)
class _Decode:
    seconds: float


@dataclass
class _Job:
    question: str
    top_k: int
    future: asyncio.Future[list[Candidate]] = field(repr=False)
    cost: int = 0  # beam-characters: beam width × (length + COST_OVERHEAD_CHARS)
    decode: _Decode | None = None  # the decode that answered it


class MicroBatcher:
    def __init__(
        self,
        answer: AnswerFn,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        beam_width: BeamWidthFn = lambda top_k: top_k,
        max_batch_cost: int | None = None,
        on_batch: Callable[[int, float], None] | None = None,
        on_queue_depth: Callable[[int], None] | None = None,
        thread_setup: Callable[[], None] | None = None,
    ) -> None:
        self._answer = answer
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.beam_width = beam_width  # the decoding's rule (DecodeOptions.beam_width): top_k → beam
        self.max_batch_cost = max_batch_cost  # beam-characters a batch may hold (its first question always goes in)
        self._on_batch = on_batch or (lambda size, seconds: None)
        self._on_queue_depth = on_queue_depth or (lambda depth: None)
        self._requests: deque[deque[_Job]] = deque()  # each request's questions still waiting, served in turn
        self._waiting = 0
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="kgqa-decode", initializer=thread_setup or (lambda: None)
        )
        self._task: asyncio.Task[None] | None = None
        self._last_batch: int | None = None  # questions in the last batch: after a lone one, no wait to fill
        self._busy = 0  # questions being decoded
        self._decoding: list[_Job] = []  # the batch being decoded
        self._closing = False  # close() was called: no new questions
        self._cut: asyncio.TimerHandle | None = None  # close()'s grace period, then unanswered questions fail

    @property
    def waiting(self) -> int:
        """Questions waiting for a batch (not those being decoded)."""
        return self._waiting

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="kgqa-batcher")

    def close(self, grace_s: float | None) -> None:
        """Take no more questions; those not answered within ``grace_s`` (None: no limit) fail with ShuttingDownError,
        whether they still wait or are being decoded (a decode cannot be interrupted: its results are dropped)."""
        self._closing = True
        if grace_s is not None and self._cut is None:
            self._cut = asyncio.get_running_loop().call_later(grace_s, self._fail_unanswered)

    def _fail_unanswered(self) -> None:
        error = ShuttingDownError("the service is stopping and could not answer within its grace period")
        for job in [*self._decoding, *(job for request in self._requests for job in request)]:
            if not job.future.done():
                job.future.set_exception(error)

    def _cut_done(self) -> bool:
        return self._cut is not None and self._cut.when() <= asyncio.get_running_loop().time()

    async def stop(self) -> None:
        """Finish what was submitted (what ``close`` cut is not waited for), then stop."""
        while self._waiting or (self._busy and not self._cut_done()):
            await asyncio.sleep(0.01)
        if self._cut is not None:
            self._cut.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # a decode cut by close() is not waited for here (its thread ends with it; its results are dropped)
        self._executor.shutdown(wait=not self._cut_done(), cancel_futures=True)

    async def submit(
        self,
        questions: Sequence[str],
        top_k: int,
        timeout_s: float | None = None,
        timing: RequestTiming | None = None,
    ) -> list[list[Candidate]]:
        """Each question's candidates, in order; QueueFullError when too many are waiting already,
        DeadlineExceededError when not all are answered within ``timeout_s`` (its questions still waiting are dropped).
        ``timing``, when given, is filled in with where the request's time went.
        """
        submitted = time.perf_counter()
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
            results = list(await asyncio.wait_for(asyncio.gather(*(job.future for job in jobs)), timeout_s))
        except TimeoutError:
            raise DeadlineExceededError(f"{len(jobs)} question(s) not answered within {timeout_s:g} s") from None
        if timing is not None:
            decodes = {job.decode for job in jobs if job.decode is not None}  # by identity (eq=False)
            timing.model_s = sum(decode.seconds for decode in decodes)
            timing.queue_s = max(0.0, time.perf_counter() - submitted - timing.model_s)
            timing.batches = len(decodes)
        return results

    def cost(self, question: str, top_k: int) -> int:
        """A question's share of a batch's decoding work, in beam-characters."""
        return self.beam_width(top_k) * (len(question) + COST_OVERHEAD_CHARS)

    def _take(self, budget: float = math.inf) -> _Job | None:
        """The next question, round-robin over the waiting requests; None when none waits or it costs over
        ``budget`` (it stays first in line, for the next batch)."""
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

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            first = self._take()
            if first is None:
                self._arrived.clear()
                continue
            batch = [first]
            budget = (self.max_batch_cost or math.inf) - first.cost
            deadline = loop.time() + (0.0 if self._last_batch == 1 else self.max_wait_s)
            while len(batch) < self.max_batch_size:
                job = self._take(budget)
                if job is not None:
                    batch.append(job)
                    budget -= job.cost
                    continue
                if self._waiting:  # the next question does not fit this batch: it starts the next one
                    break
                self._arrived.clear()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            self._on_queue_depth(self._waiting)
            self._last_batch = len(batch)
            self._busy = len(batch)
            self._decoding = batch
            try:
                for group in self._groups(batch):
                    await self._decode(group)
            finally:
                self._busy = 0
                self._decoding = []

    def _groups(self, batch: list[_Job]) -> list[list[_Job]]:
        """Jobs whose top_k fits in the beam decode together; a larger top_k widens the beam, so it goes apart.
        The cheapest group first: a single short question does not wait for a wide beam in the same batch."""
        groups: dict[int, list[_Job]] = {}
        for job in batch:
            groups.setdefault(self.beam_width(job.top_k), []).append(job)
        return sorted(groups.values(), key=lambda group: sum(job.cost for job in group))

    async def _decode(self, group: list[_Job]) -> None:
        live = [job for job in group if not job.future.done()]  # a cancelled request's questions are skipped
        if not live:
            return
        started = time.perf_counter()
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._answer, [job.question for job in live], [job.top_k for job in live]
            )
        except Exception as exc:
            for job in live:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        decode = _Decode(time.perf_counter() - started)
        self._on_batch(len(live), decode.seconds)
        for job, candidates in zip(live, results, strict=True):
            job.decode = decode
            if not job.future.done():
                job.future.set_result(candidates)
