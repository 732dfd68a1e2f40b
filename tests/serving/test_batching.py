import asyncio
import time

import pytest

from zero2one.serving.batching import MicroBatcher


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_burst_becomes_few_calls_and_answers_stay_with_their_callers() -> None:
    calls: list[int] = []

    def predict(rows: list[int]) -> list[int]:
        calls.append(len(rows))
        time.sleep(0.01)  # while this runs, the rest of the burst queues up
        return [r * 10 for r in rows]

    async def main() -> list[list[int]]:
        batcher = MicroBatcher(predict, max_size=64)
        results = await asyncio.gather(*(batcher.submit([i, i + 1000]) for i in range(100)))
        await batcher.close()
        return results

    results = run(main())
    assert results == [[i * 10, (i + 1000) * 10] for i in range(100)]
    assert sum(calls) == 200
    assert len(calls) < 20 and max(calls) <= 64


def test_lone_request_does_not_wait() -> None:
    async def main() -> float:
        batcher = MicroBatcher(lambda rows: rows, max_size=64, max_wait=0.0)
        start = time.perf_counter()
        await batcher.submit([1])
        elapsed = time.perf_counter() - start
        await batcher.close()
        return elapsed

    assert run(main()) < 0.5  # generous: only that it does not wait for a full batch


def test_max_wait_gathers_requests_arriving_later() -> None:
    calls: list[int] = []

    def predict(rows: list[int]) -> list[int]:
        calls.append(len(rows))
        return rows

    async def main() -> None:
        batcher = MicroBatcher(predict, max_size=64, max_wait=0.2)
        first = asyncio.create_task(batcher.submit([1]))
        await asyncio.sleep(0.02)
        second = asyncio.create_task(batcher.submit([2]))
        assert await first == [1] and await second == [2]
        await batcher.close()

    run(main())
    assert calls == [2]


def test_a_failing_batch_fails_each_of_its_callers() -> None:
    def predict(rows: list[int]) -> list[int]:
        raise ValueError("bad row")

    async def main() -> list[object]:
        batcher = MicroBatcher(predict)
        results = await asyncio.gather(*(batcher.submit([i]) for i in range(5)),
                                       return_exceptions=True)
        await batcher.close()
        return results

    assert all(isinstance(r, ValueError) for r in run(main()))


def test_wrong_result_count_is_an_error() -> None:
    async def main() -> None:
        batcher = MicroBatcher(lambda rows: rows[:-1])
        with pytest.raises(RuntimeError, match="returned 1 results for 2"):
            await batcher.submit([1, 2])
        await batcher.close()

    run(main())


def test_large_batches_run_in_a_thread_small_ones_inline() -> None:
    import threading

    threads: dict[int, str] = {}

    def predict(rows: list[int]) -> list[int]:
        threads[len(rows)] = threading.current_thread().name
        return rows

    async def main() -> None:
        batcher = MicroBatcher(predict, max_size=1000, inline_rows=4)
        await batcher.submit([1, 2])
        await batcher.submit(list(range(10)))
        await batcher.close()

    run(main())
    assert threads[2] == "MainThread" and threads[10].startswith("predict")


def test_oversized_request_leads_the_next_batch() -> None:
    calls: list[int] = []

    def predict(rows: list[int]) -> list[int]:
        calls.append(len(rows))
        time.sleep(0.01)
        return rows

    async def main() -> None:
        batcher = MicroBatcher(predict, max_size=4)
        results = await asyncio.gather(*(batcher.submit([i] * 3) for i in range(4)))
        assert results == [[i] * 3 for i in range(4)]
        await batcher.close()

    run(main())
    assert all(c <= 4 for c in calls) and sum(calls) == 12
