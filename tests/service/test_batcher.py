"""The micro-batcher over the real engine: what gets decoded together, in what order, and when it refuses."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from kgqa.model.answerer import DecodeOptions
from kgqa.model.candidate import Candidate
from kgqa.service.batcher import MicroBatcher, QueueFullError, RequestTiming
from kgqa.service.engine import Engine

QUESTIONS = [
    "你知道守望星光是哪家公司出品的吗？",
    "刘晓华主要讲什么课啊？",
    "《高三》一书的作者是谁？",
    "美国的首都是哪里？",
]


class RecordingEngine:
    """The real engine, with a record of each decode call: (number of questions, top_k)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.calls: list[tuple[int, int]] = []

    def answer(self, questions: Sequence[str], top_k: Sequence[int]) -> list[list[Candidate]]:
        self.calls.append((len(questions), max(top_k)))  # decoded with the beam of the largest
        return self.engine.answer(questions, top_k)


def batcher_for(recorder: RecordingEngine, **changes: float) -> MicroBatcher:
    beam_width = DecodeOptions(num_beams=5).beam_width  # the service's rule
    settings = {"max_batch_size": 32, "max_wait_s": 0.05, "max_queue": 100, "beam_width": beam_width} | changes
    return MicroBatcher(recorder.answer, **settings)  # type: ignore[arg-type]


def test_concurrent_questions_decode_together_in_order(engine: Engine) -> None:
    recorder = RecordingEngine(engine)
    expected = [[c.subject for c in cands] for cands in engine.answer(QUESTIONS, 2)]

    async def scenario() -> list[list[Candidate]]:
        batcher = batcher_for(recorder)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit([q], 2) for q in QUESTIONS))
        await batcher.stop()
        return [r[0] for r in results]

    results = asyncio.run(scenario())
    assert recorder.calls == [(len(QUESTIONS), 2)]  # one decode for the four requests
    assert [[c.subject for c in cands] for cands in results] == expected


def test_after_a_lone_question_the_next_batch_starts_without_waiting_to_fill(engine: Engine) -> None:
    """A lone client's question does not wait for company: after a batch of one, a question starts its batch at once
    (the one sent just after it goes into the next batch); a batch of several waits to fill again."""
    recorder = RecordingEngine(engine)

    async def scenario() -> None:
        batcher = batcher_for(recorder, max_wait_s=0.3)
        batcher.start()
        await batcher.submit(QUESTIONS[:1], 1)  # the first batch waits to fill (no batch before it): alone
        second = asyncio.ensure_future(batcher.submit(QUESTIONS[1:2], 1))
        await asyncio.sleep(0.01)  # the batcher takes it first
        await asyncio.gather(second, batcher.submit(QUESTIONS[2:3], 1))
        await asyncio.gather(*(batcher.submit([q], 1) for q in QUESTIONS[:2]))  # one batch of two
        third = asyncio.ensure_future(batcher.submit(QUESTIONS[2:3], 1))
        await asyncio.sleep(0.01)
        await asyncio.gather(third, batcher.submit(QUESTIONS[3:], 1))  # after a batch of two: waits, joined
        await batcher.stop()

    asyncio.run(scenario())
    assert recorder.calls == [(1, 1), (1, 1), (1, 1), (2, 1), (2, 1)]


def test_a_wide_top_k_decodes_apart_and_each_gets_its_own_k(engine: Engine) -> None:
    recorder = RecordingEngine(engine)

    async def scenario() -> tuple[list[list[Candidate]], ...]:
        batcher = batcher_for(recorder)
        batcher.start()
        results = await asyncio.gather(
            batcher.submit(QUESTIONS[:2], 1), batcher.submit(QUESTIONS[2:3], 3), batcher.submit(QUESTIONS[3:], 8)
        )
        await batcher.stop()
        return results

    narrow, medium, wide = asyncio.run(scenario())
    # top_k 1 and 3 fit in the beam of 5: one group; top_k 8 widens the beam: its own group
    assert sorted(recorder.calls) == [(1, 8), (3, 3)]
    assert [len(c) for c in narrow] == [1, 1] and len(medium[0]) == 3 and len(wide[0]) == 8


def test_batches_are_capped_at_max_batch_size(engine: Engine) -> None:
    recorder = RecordingEngine(engine)

    async def scenario() -> None:
        batcher = batcher_for(recorder, max_batch_size=3)
        batcher.start()
        await batcher.submit(QUESTIONS * 2, 1)
        await batcher.stop()

    asyncio.run(scenario())
    assert [n for n, _ in recorder.calls] == [3, 3, 2]


def test_a_requests_timing_counts_the_decodes_that_held_its_questions(engine: Engine) -> None:
    async def scenario() -> tuple[RequestTiming, RequestTiming]:
        batcher = batcher_for(RecordingEngine(engine), max_batch_size=3)
        batcher.start()
        split, alone = RequestTiming(), RequestTiming()
        await batcher.submit(QUESTIONS * 2, 1, timing=split)  # 8 questions in batches of 3, 3 and 2
        await batcher.submit(QUESTIONS[:1], 1, timing=alone)
        await batcher.stop()
        return split, alone

    split, alone = asyncio.run(scenario())
    assert (split.batches, alone.batches) == (3, 1)
    assert split.model_s > 0 and alone.model_s > 0 and split.queue_s >= 0 and alone.queue_s >= 0


def test_a_full_queue_refuses_instead_of_waiting(engine: Engine) -> None:
    async def scenario() -> None:
        batcher = batcher_for(RecordingEngine(engine), max_queue=3)
        batcher.start()
        with pytest.raises(QueueFullError, match="at most 3"):
            await batcher.submit(QUESTIONS, 1)
        assert len(await batcher.submit(QUESTIONS[:3], 1)) == 3  # within the limit: answered
        await batcher.stop()

    asyncio.run(scenario())


def test_a_cancelled_request_is_not_decoded(engine: Engine) -> None:
    recorder = RecordingEngine(engine)

    async def scenario() -> None:
        batcher = batcher_for(recorder, max_wait_s=0.2)
        batcher.start()
        abandoned = asyncio.ensure_future(batcher.submit(QUESTIONS[:1], 1))
        await asyncio.sleep(0.01)
        abandoned.cancel()  # the client went away while its question waited for a batch
        kept = await batcher.submit(QUESTIONS[1:2], 1)
        alone = engine.answer(QUESTIONS[1:2], 1)
        assert [(c.subject, c.relation, c.object) for c in kept[0]] == [
            (c.subject, c.relation, c.object) for c in alone[0]
        ]
        await batcher.stop()

    asyncio.run(scenario())
    assert recorder.calls == [(1, 1)]


def test_a_single_question_is_answered_while_a_large_request_decodes(engine: Engine) -> None:
    """Round-robin over requests: a question sent after a 12-question request goes into the next batch (of 3),
    not behind the other request's remaining 9 questions."""
    recorder = RecordingEngine(engine)
    finished: list[str] = []

    async def scenario() -> None:
        batcher = batcher_for(recorder, max_batch_size=3)
        batcher.start()

        async def ask(name: str, questions: list[str]) -> None:
            await batcher.submit(questions, 1)
            finished.append(name)

        large = asyncio.ensure_future(ask("large", QUESTIONS * 3))
        await asyncio.sleep(0)  # the large request is queued first; its first batch starts
        single = asyncio.ensure_future(ask("single", QUESTIONS[1:2]))
        await asyncio.gather(large, single)
        await batcher.stop()

    asyncio.run(scenario())
    assert finished == ["single", "large"]
    assert [n for n, _ in recorder.calls] == [3, 3, 3, 3, 1]  # 13 questions in batches of at most 3


def test_a_batch_holds_at_most_its_cost_and_its_cheapest_group_decodes_first(engine: Engine) -> None:
    """Wide-beam questions fill a batch by cost, one each here; a single short question sent meanwhile joins the next
    batch and decodes before the wide question beside it."""
    recorder = RecordingEngine(engine)
    wide, single = QUESTIONS[0], QUESTIONS[1]
    finished: list[str] = []

    async def scenario() -> None:
        probe = batcher_for(recorder)
        budget = probe.cost(wide, 20) + probe.cost(single, 1)  # one wide question and the single one
        assert probe.cost(wide, 20) == 20 * (len(wide) + 16) and probe.cost(single, 1) == 5 * (len(single) + 16)
        batcher = batcher_for(recorder, max_batch_cost=budget)
        batcher.start()

        async def ask(name: str, questions: list[str], top_k: int) -> None:
            await batcher.submit(questions, top_k)
            finished.append(name)

        large = asyncio.ensure_future(ask("wide", [wide] * 4, 20))
        await asyncio.sleep(0)  # the wide request is queued first; its first batch starts
        short = asyncio.ensure_future(ask("single", [single], 1))
        await asyncio.gather(large, short)
        await batcher.stop()

    asyncio.run(scenario())
    assert finished == ["single", "wide"]
    # batch 1: a wide question alone; batch 2: the single question (decoded first), then the next wide one
    assert recorder.calls == [(1, 20), (1, 1), (1, 20), (1, 20), (1, 20)]
