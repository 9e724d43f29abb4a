"""The micro-batcher over the real engine: which questions join the running search at which step, in what order
they leave, and when it refuses. No timing: orders and counts only."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from kgqa.model.answerer import DecodeOptions
from kgqa.model.candidate import Candidate
from kgqa.service.batcher import MicroBatcher, QueueFullError
from kgqa.service.engine import Engine

QUESTIONS = [
    "你知道守望星光是哪家公司出品的吗？",
    "刘晓华主要讲什么课啊？",
    "《高三》一书的作者是谁？",
    "美国的首都是哪里？",
]
SINGLE = "守望的拼音是什么？"


class RecordingRun:
    """The engine's real run, with a record of each step: the questions that joined before it, and how many were in
    the search during it."""

    def __init__(self, engine: Engine, steps: list[tuple[list[str], int]]) -> None:
        self.run = engine.run()
        self.steps = steps
        self.joining: list[str] = []

    @property
    def active(self) -> int:
        return self.run.active

    def add(self, questions: Sequence[str], top_ks: Sequence[int]) -> list[int]:
        self.joining += questions
        return self.run.add(questions, top_ks)

    def drop(self, ids: Sequence[int]) -> None:
        self.run.drop(ids)

    def step(self) -> dict[int, list[Candidate]]:
        self.steps.append((self.joining, self.run.active))
        self.joining = []
        return self.run.step()


def batcher_for(engine: Engine, steps: list[tuple[list[str], int]], **changes: float) -> MicroBatcher:
    beam_width = DecodeOptions(num_beams=5).beam_width  # the service's rule
    settings = {"max_batch_size": 32, "max_wait_s": 0.05, "max_queue": 100, "beam_width": beam_width} | changes
    return MicroBatcher(lambda: RecordingRun(engine, steps), **settings)  # type: ignore[arg-type]


def _same(got: list[Candidate], expected: list[Candidate]) -> bool:
    return [(c.subject, c.relation, c.object) for c in got] == [(c.subject, c.relation, c.object) for c in expected]


def test_concurrent_questions_join_the_search_together_and_are_answered_as_alone(engine: Engine) -> None:
    steps: list[tuple[list[str], int]] = []

    async def scenario() -> list[list[Candidate]]:
        batcher = batcher_for(engine, steps)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit([q], 2) for q in QUESTIONS))
        await batcher.stop()
        return [r[0] for r in results]

    results = asyncio.run(scenario())
    assert sorted(steps[0][0]) == sorted(QUESTIONS)  # all four started at the first step
    assert all(not joining for joining, _ in steps[1:])
    for question, got in zip(QUESTIONS, results, strict=True):
        assert _same(got, engine.answer([question], 2)[0])


def test_each_question_gets_its_own_top_k_in_one_search(engine: Engine) -> None:
    steps: list[tuple[list[str], int]] = []

    async def scenario() -> tuple[list[list[Candidate]], ...]:
        batcher = batcher_for(engine, steps)
        batcher.start()
        results = await asyncio.gather(
            batcher.submit(QUESTIONS[:2], 1), batcher.submit(QUESTIONS[2:3], 3), batcher.submit(QUESTIONS[3:], 8)
        )
        await batcher.stop()
        return results

    narrow, medium, wide = asyncio.run(scenario())
    assert len(steps[0][0]) == 4  # a wider beam no longer decodes apart
    assert [len(c) for c in narrow] == [1, 1] and len(medium[0]) == 3 and len(wide[0]) == 8
    assert _same(wide[0], engine.answer(QUESTIONS[3:], 8)[0]) and _same(narrow[1], engine.answer(QUESTIONS[1:2], 1)[0])


def test_the_search_holds_at_most_max_batch_size_questions(engine: Engine) -> None:
    steps: list[tuple[list[str], int]] = []

    async def scenario() -> list[list[Candidate]]:
        batcher = batcher_for(engine, steps, max_batch_size=3)
        batcher.start()
        results = await batcher.submit(QUESTIONS * 2, 1)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert max(active for _, active in steps) == 3
    assert len(steps[0][0]) == 3 and sum(len(joining) for joining, _ in steps) == 8  # the rest joined as others left
    assert all(results)


def test_a_full_queue_refuses_instead_of_waiting(engine: Engine) -> None:
    async def scenario() -> None:
        batcher = batcher_for(engine, [], max_queue=3)
        batcher.start()
        with pytest.raises(QueueFullError, match="at most 3"):
            await batcher.submit(QUESTIONS, 1)
        assert len(await batcher.submit(QUESTIONS[:3], 1)) == 3  # within the limit: answered
        await batcher.stop()

    asyncio.run(scenario())


def test_a_cancelled_request_is_not_decoded(engine: Engine) -> None:
    steps: list[tuple[list[str], int]] = []

    async def scenario() -> None:
        batcher = batcher_for(engine, steps, max_wait_s=0.2)
        batcher.start()
        abandoned = asyncio.ensure_future(batcher.submit(QUESTIONS[:1], 1))
        await asyncio.sleep(0.01)
        abandoned.cancel()  # the client went away while its question waited
        kept = await batcher.submit(QUESTIONS[1:2], 1)
        assert _same(kept[0], engine.answer(QUESTIONS[1:2], 1)[0])
        await batcher.stop()

    asyncio.run(scenario())
    assert [q for joining, _ in steps for q in joining] == QUESTIONS[1:2]


def test_a_question_that_leaves_the_client_is_dropped_from_the_running_search(engine: Engine) -> None:
    steps: list[tuple[list[str], int]] = []

    async def scenario() -> None:
        batcher = batcher_for(engine, steps)
        batcher.start()
        abandoned = asyncio.ensure_future(batcher.submit(QUESTIONS[:1], 5))
        while not steps:  # it is in the search
            await asyncio.sleep(0.001)
        abandoned.cancel()
        kept = await batcher.submit(QUESTIONS[1:2], 1)
        assert _same(kept[0], engine.answer(QUESTIONS[1:2], 1)[0])
        await batcher.stop()

    asyncio.run(scenario())
    # once the single question joined, the abandoned one was no longer searched beside it
    joined_at = next(i for i, (joining, _) in enumerate(steps) if QUESTIONS[1] in joining)
    assert all(active <= 1 for _, active in steps[joined_at + 1 :])


def test_a_single_question_joins_beside_a_large_request_and_leaves_first(engine: Engine) -> None:
    """Round-robin over requests: a question sent after a 12-question request joins the search at the first free
    place, not behind the other request's remaining questions."""
    steps: list[tuple[list[str], int]] = []
    finished: list[str] = []

    async def scenario() -> None:
        batcher = batcher_for(engine, steps, max_batch_size=3)
        batcher.start()

        async def ask(name: str, questions: list[str]) -> None:
            await batcher.submit(questions, 1)
            finished.append(name)

        large = asyncio.ensure_future(ask("large", QUESTIONS * 3))
        while not steps:  # the large request's first questions are in the search
            await asyncio.sleep(0.001)
        single = asyncio.ensure_future(ask("single", [SINGLE]))
        await asyncio.gather(large, single)
        await batcher.stop()

    asyncio.run(scenario())
    assert finished == ["single", "large"]
    joined = [q for joining, _ in steps for q in joining]
    # it joined at one of the next two free places (round-robin: the large request's turn may come first), not after
    # the large request's remaining 9 questions
    assert len(joined) == 13 and joined.index(SINGLE) <= 4


def test_the_search_holds_at_most_its_cost(engine: Engine) -> None:
    """Wide-beam questions fill the search by cost, one at a time here; a single short question sent meanwhile joins
    beside the wide one in the search and leaves before it."""
    steps: list[tuple[list[str], int]] = []
    wide, single = QUESTIONS[0], QUESTIONS[1]
    finished: list[str] = []

    async def scenario() -> None:
        probe = batcher_for(engine, steps)
        budget = probe.cost(wide, 20) + probe.cost(single, 1)  # one wide question and the single one
        assert probe.cost(wide, 20) == 20 * (len(wide) + 16) and probe.cost(single, 1) == 5 * (len(single) + 16)
        batcher = batcher_for(engine, steps, max_batch_cost=budget)
        batcher.start()

        async def ask(name: str, questions: list[str], top_k: int) -> None:
            await batcher.submit(questions, top_k)
            finished.append(name)

        large = asyncio.ensure_future(ask("wide", [wide] * 4, 20))
        while not steps:
            await asyncio.sleep(0.001)
        short = asyncio.ensure_future(ask("single", [single], 1))
        await asyncio.gather(large, short)
        await batcher.stop()

    asyncio.run(scenario())
    assert finished == ["single", "wide"]
    assert max(active for _, active in steps) == 2  # at most one wide question beside the single one
