"""GroupCommit: concurrent callers share flushes; results and errors reach
each caller; a lone caller is not delayed."""

from __future__ import annotations

import asyncio

import pytest

from lrod.store.group_commit import GroupCommit


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def flush(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await asyncio.sleep(0.01)  # like a commit
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_concurrent_callers_share_flushes() -> None:
    recorder = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(recorder.flush)
    results = await asyncio.gather(*[commit.submit(i) for i in range(0, 100, 2)])
    assert results == [i * 10 for i in range(0, 100, 2)]
    assert sum(len(b) for b in recorder.batches) == 50
    assert len(recorder.batches) <= 3  # the first alone, then the rest together


async def test_each_caller_gets_its_own_error() -> None:
    recorder = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(recorder.flush)
    outcomes = await asyncio.gather(*[commit.submit(i) for i in range(4)], return_exceptions=True)
    assert outcomes[0] == 0
    assert outcomes[2] == 20
    assert isinstance(outcomes[1], ValueError)
    assert str(outcomes[3]) == "odd 3"


async def test_a_failed_flush_fails_its_whole_batch_only() -> None:
    calls = 0

    async def flush(items: list[int]) -> list[int | BaseException]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        return list(items)

    commit: GroupCommit[int, int] = GroupCommit(flush)
    with pytest.raises(ConnectionError):
        await commit.submit(1)
    assert await commit.submit(2) == 2


async def test_batches_are_bounded() -> None:
    recorder = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(recorder.flush, max_batch=8)
    await asyncio.gather(*[commit.submit(i * 2) for i in range(40)])
    assert max(len(b) for b in recorder.batches) <= 8
    await commit.wait_idle()


async def test_one_bad_member_is_split_out_and_fails_alone() -> None:
    flushes: list[list[int]] = []

    async def flush(items: list[int]) -> list[int | BaseException]:
        flushes.append(list(items))
        await asyncio.sleep(0.001)
        if 13 in items:
            raise ValueError("13 cannot be stored")  # the whole transaction fails
        return list(items)

    commit: GroupCommit[int, int] = GroupCommit(flush)
    outcomes = await asyncio.gather(*[commit.submit(i) for i in range(31)], return_exceptions=True)
    assert isinstance(outcomes[13], ValueError)
    assert [o for i, o in enumerate(outcomes) if i != 13] == [i for i in range(31) if i != 13]
    assert any(13 in f and len(f) > 1 for f in flushes)
    assert [13] in flushes


async def test_a_shared_failure_fails_the_batch_without_splitting() -> None:
    flushes: list[list[int]] = []

    async def flush(items: list[int]) -> list[int | BaseException]:
        flushes.append(list(items))
        await asyncio.sleep(0.001)
        raise ConnectionError("down")

    commit: GroupCommit[int, int] = GroupCommit(
        flush, shared=lambda e: isinstance(e, ConnectionError)
    )
    outcomes = await asyncio.gather(*[commit.submit(i) for i in range(20)], return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert sum(len(f) for f in flushes) == 20  # each member flushed once: no split


# -- lingering under load (the creates: lrod.store.dialect.create_linger)
async def _turns(count: int = 5) -> None:
    """Let the loop run `count` times without any time passing: a flush
    that is due runs, one that waits on a timer does not."""
    for _ in range(count):
        await asyncio.sleep(0)


async def _load(commit: GroupCommit[int, int]) -> None:
    """Batches of 20 until the writer counts as under load."""
    for _ in range(10):
        await asyncio.gather(*[commit.submit(i * 2) for i in range(20)])
    await commit.wait_idle()


async def test_an_idle_lingering_writer_flushes_its_first_caller_at_once() -> None:
    recorder = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(recorder.flush, linger=5.0)
    await _load(commit)
    recorder.batches.clear()
    answer = asyncio.ensure_future(commit.submit(4))
    await _turns()
    assert recorder.batches == [[4]]  # flushing before any timer could fire
    assert await answer == 40


async def test_a_writer_under_load_lingers_before_its_next_flush() -> None:
    for linger, waits in ((0.5, True), (0.0, False)):
        recorder = Recorder()
        commit: GroupCommit[int, int] = GroupCommit(recorder.flush, linger=linger)
        await _load(commit)
        first = asyncio.ensure_future(commit.submit(2))
        await _turns()
        late = asyncio.ensure_future(commit.submit(6))  # queued during the flush of [2]
        assert await first == 20
        await _turns()
        assert (recorder.batches[-1] == [2]) is waits  # lingering: [6] is not flushed yet
        assert await late == 60
        assert recorder.batches[-1] == [6]


async def test_a_writer_that_is_not_busy_does_not_linger() -> None:
    recorder = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(recorder.flush, linger=0.5)
    for i in range(5):  # one caller at a time: batches of one
        assert await commit.submit(i * 2) == i * 20
    first = asyncio.ensure_future(commit.submit(2))
    await _turns()
    late = asyncio.ensure_future(commit.submit(6))
    assert await first == 20
    await _turns()
    assert recorder.batches[-1] == [6]  # flushed at once: the mean batch is small
    assert await late == 60


async def test_how_busy_counts_as_under_load_is_the_writers_own() -> None:
    """Batches of two: under load for a writer that lingers from a mean of
    1.5 (PostgreSQL's creates), not for one that waits for a mean of 4."""
    for linger_from, waits in ((1.5, True), (4.0, False)):
        recorder = Recorder()
        commit: GroupCommit[int, int] = GroupCommit(
            recorder.flush, linger=0.5, linger_from=linger_from
        )
        for _ in range(10):
            await asyncio.gather(commit.submit(2), commit.submit(4))
        await commit.wait_idle()
        first = asyncio.ensure_future(commit.submit(2))
        await _turns()
        late = asyncio.ensure_future(commit.submit(6))  # queued during the flush of [2]
        assert await first == 20
        await _turns()
        assert (recorder.batches[-1] == [2]) is waits
        assert await late == 60
        assert recorder.batches[-1] == [6]


class Gated:
    """A flush that stays out until released: how many are out at once."""

    def __init__(self) -> None:
        self.out = 0
        self.most_out = 0
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()

    async def flush(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        try:
            await self.release.wait()
        finally:
            self.out -= 1
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_with_two_flushes_a_call_made_while_one_is_out_goes_out_beside_it() -> None:
    gated = Gated()
    commit: GroupCommit[int, int] = GroupCommit(gated.flush, flushes=2)
    first = commit.enqueue(1)
    await _settle()
    assert gated.batches == [[1]]  # out, and held there
    second = [commit.enqueue(i) for i in (2, 3)]
    await _settle()
    assert gated.batches == [[1], [2, 3]]  # a second flush, not behind the first
    third = [commit.enqueue(i) for i in (4, 5, -6)]
    await _settle()
    assert gated.batches == [[1], [2, 3]]  # never more than two out at once
    gated.release.set()
    assert await first == 10
    assert await asyncio.gather(*second) == [20, 30]
    outcomes = await asyncio.gather(*third, return_exceptions=True)
    assert outcomes[:2] == [40, 50]
    assert isinstance(outcomes[2], ValueError)  # one bad member fails alone
    assert gated.most_out == 2
    # The third batch went out once a flush came back, whole.
    assert gated.batches[2] == [4, 5, -6]
    await commit.wait_idle()
    async with asyncio.timeout(1):
        assert await commit.enqueue(7) == 70  # a drain starts again


async def test_one_flush_at_a_time_by_default() -> None:
    gated = Gated()
    commit: GroupCommit[int, int] = GroupCommit(gated.flush)
    calls = [commit.enqueue(1)]
    await _settle()
    calls += [commit.enqueue(i) for i in (2, 3)]
    await _settle()
    assert gated.batches == [[1]]
    gated.release.set()
    assert await asyncio.gather(*calls) == [10, 20, 30]
    assert gated.most_out == 1
    assert gated.batches == [[1], [2, 3]]


async def test_a_call_after_every_drain_ended_is_flushed() -> None:
    recorder = Recorder()
    commit: GroupCommit[int, int] = GroupCommit(recorder.flush, flushes=2)
    for _ in range(3):
        async with asyncio.timeout(1):
            assert await asyncio.gather(commit.submit(0), commit.submit(2)) == [0, 20]
            await commit.wait_idle()


async def test_only_what_may_go_beside_starts_a_second_flush() -> None:
    gated = Gated()
    commit: GroupCommit[int, int] = GroupCommit(
        gated.flush, flushes=2, beside=lambda item: item >= 100
    )
    calls = [commit.enqueue(1)]
    await _settle()
    calls += [commit.enqueue(2), commit.enqueue(3)]
    await _settle()
    assert gated.batches == [[1]]  # these wait for the next flush
    calls.append(commit.enqueue(100))
    await _settle()
    # It goes out beside the first, with what was queued before it.
    assert gated.batches == [[1], [2, 3, 100]]
    gated.release.set()
    assert await asyncio.gather(*calls) == [10, 20, 30, 1000]
    assert gated.most_out == 2
