"""The attempt watchdog (swarmgate.deadlines) on its own and under the pipeline, on asyncio and trio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from swarmgate import (
    ErrorEvent,
    FinishEvent,
    ProviderManager,
    ProviderTimeoutError,
    RequestCancelledError,
    TextDelta,
    TokenUsage,
    UsageEvent,
    hookimpl,
)
from swarmgate.deadlines import AsyncioWatchdog, TrioWatchdog, new_watchdog
from swarmgate.testing import ScriptedProvider

pytestmark = pytest.mark.anyio


def cancel_requests() -> int:
    """Cancellation requests pending on the current asyncio task (0 on trio)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return 0
    return 0 if task is None else task.cancelling()


# -- the watchdog on its own ---------------------------------------------------


async def test_the_backend_is_picked_from_the_running_loop(anyio_backend: str) -> None:
    watchdog = new_watchdog()
    assert type(watchdog) is (AsyncioWatchdog if anyio_backend == "asyncio" else TrioWatchdog)
    assert abs(watchdog.now() - anyio.current_time()) < 0.01


async def test_an_await_past_its_deadline_raises_timeout_error_on_time() -> None:
    watchdog = new_watchdog()
    started = anyio.current_time()
    with pytest.raises(TimeoutError), watchdog.until(watchdog.now() + 0.05):
        await anyio.sleep(2)
    elapsed = anyio.current_time() - started
    watchdog.close()
    assert 0.045 <= elapsed < 0.5
    assert cancel_requests() == 0
    await anyio.sleep(0.01)  # no stray cancellation left behind


async def test_a_deadline_met_leaves_no_cancellation_behind() -> None:
    watchdog = new_watchdog()
    for _ in range(3):
        with watchdog.until(watchdog.now() + 0.03):
            await anyio.lowlevel.checkpoint()
    await anyio.sleep(0.1)  # past every deadline set, outside any guard
    watchdog.close()
    assert cancel_requests() == 0


async def test_time_outside_a_guard_never_counts() -> None:
    """A consumer holding an event past the deadline is not cut short, and
    the next guard gets a deadline of its own."""
    watchdog = new_watchdog()
    with watchdog.until(watchdog.now() + 0.05):
        await anyio.lowlevel.checkpoint()
    await anyio.sleep(0.12)  # the timer fires here, outside the guard: nothing happens
    with watchdog.until(watchdog.now() + 0.3):
        await anyio.sleep(0.01)
    with pytest.raises(TimeoutError), watchdog.until(watchdog.now() + 0.05):
        await anyio.sleep(1)
    watchdog.close()


async def test_a_later_deadline_is_a_store_and_an_earlier_one_rearms() -> None:
    watchdog = new_watchdog()
    with watchdog.until(watchdog.now() + 5):  # a first-token bound far off
        await anyio.lowlevel.checkpoint()
    started = anyio.current_time()
    # A shorter idle bound: must not wait for the first bound's 5 s.
    with pytest.raises(TimeoutError), watchdog.until(watchdog.now() + 0.05):
        await anyio.sleep(2)
    assert anyio.current_time() - started < 0.5
    watchdog.close()


async def test_deadlines_moving_on_keep_a_long_sequence_alive() -> None:
    watchdog = new_watchdog()
    started = anyio.current_time()
    for _ in range(8):  # 8 x 30 ms against a 150 ms bound per await: 240 ms in all
        with watchdog.until(watchdog.now() + 0.15):
            await anyio.sleep(0.03)
    assert anyio.current_time() - started >= 0.24
    watchdog.close()
    assert cancel_requests() == 0


async def test_an_enclosing_cancellation_wins_over_the_guard() -> None:
    watchdog = new_watchdog()
    with anyio.move_on_after(0.03) as outer:
        with watchdog.until(watchdog.now() + 0.2):
            await anyio.sleep(1)
    assert outer.cancelled_caught
    await anyio.sleep(0.3)  # past the guard's deadline: its timer must not cancel anything now
    watchdog.close()
    assert cancel_requests() == 0


async def test_both_firing_together_leave_the_task_clean() -> None:
    """The enclosing scope and the guard reach the same deadline: either the
    scope catches its cancellation or the guard raises TimeoutError, and
    nothing is left pending."""
    for _ in range(5):
        watchdog = new_watchdog()
        deadline = watchdog.now() + 0.02
        timed_out = False
        with anyio.CancelScope(deadline=deadline) as outer:
            try:
                with watchdog.until(deadline):
                    await anyio.sleep(1)
            except TimeoutError:
                timed_out = True
                await anyio.lowlevel.checkpoint()  # the enclosing scope's cancellation still arrives
        assert outer.cancelled_caught or timed_out
        watchdog.close()
        assert cancel_requests() == 0
        await anyio.sleep(0.01)


async def test_a_shielded_cleanup_inside_the_guard_runs_to_its_end() -> None:
    watchdog = new_watchdog()
    cleaned = False

    async def close_connection() -> None:
        nonlocal cleaned
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.1)  # outlives the deadline
            cleaned = True
        await anyio.sleep(1)

    started = anyio.current_time()
    with pytest.raises(TimeoutError), watchdog.until(watchdog.now() + 0.02):
        await close_connection()
    elapsed = anyio.current_time() - started
    watchdog.close()
    assert cleaned
    assert 0.1 <= elapsed < 0.5
    assert cancel_requests() == 0


async def test_a_guard_inside_a_shielded_scope_still_times_out() -> None:
    watchdog = new_watchdog()
    with anyio.CancelScope(shield=True), pytest.raises(TimeoutError), watchdog.until(watchdog.now() + 0.02):
        await anyio.sleep(1)
    watchdog.close()


async def test_an_await_that_swallows_the_cancellation_keeps_its_result() -> None:
    watchdog = new_watchdog()

    async def stubborn() -> str:
        try:
            await anyio.sleep(1)
        except anyio.get_cancelled_exc_class():
            return "late answer"
        return "on time"

    with watchdog.until(watchdog.now() + 0.02):
        result = await stubborn()
    watchdog.close()
    assert result == "late answer"
    assert cancel_requests() == 0
    await anyio.sleep(0.01)


async def test_one_watchdog_follows_the_task_that_awaits() -> None:
    """A hedged stream's first event is pulled in a lane task, the rest by the caller."""
    watchdog = new_watchdog()

    async def lane() -> None:
        with watchdog.until(watchdog.now() + 1):
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        group.start_soon(lane)
    with pytest.raises(TimeoutError), watchdog.until(watchdog.now() + 0.02):
        await anyio.sleep(1)
    watchdog.close()


# -- the watchdog under the pipeline -------------------------------------------


def stream_config(**timeouts: float) -> dict[str, Any]:
    return {
        "providers": {
            "primary": {
                "type": "paced",
                "priority": 1,
                "timeout": 2000,
                "timeouts": timeouts,
                "models": {"m": {"costPerToken": 0.001}},
            },
        },
    }


def paced(gaps: list[float], stall: float | None = None) -> type[ScriptedProvider]:
    """A provider streaming one word after each gap in ``gaps``, then stalling
    ``stall`` seconds (if given) before its usage and finish."""

    class Paced(ScriptedProvider):
        async def stream(self, call: Any) -> AsyncIterator[Any]:
            for i, gap in enumerate(gaps):
                await anyio.sleep(gap)
                yield TextDelta(f"w{i} ")
            if stall is not None:
                await anyio.sleep(stall)
            yield UsageEvent(TokenUsage.of(5, len(gaps)))
            yield FinishEvent("stop")

    return Paced


async def collect(events: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in events]


async def test_events_just_inside_the_idle_bound_never_time_out() -> None:
    """Eight events 50 ms apart against a 200 ms idle bound: 400 ms in all, no timeout."""
    drivers = {"swarmgate.providers": {"paced": paced([0.05] * 8)}}
    async with ProviderManager(stream_config(streamIdle=200, firstToken=200), drivers=drivers) as manager:
        with anyio.fail_after(3):
            events = await collect(manager.stream(prompt="hi", model="m"))
    final = events[-1]
    assert isinstance(final, FinishEvent)
    assert final.response is not None
    assert final.response.content == "".join(f"w{i} " for i in range(8))
    assert [a.ok for a in final.response.attempts] == [True]


async def test_a_stall_after_some_events_times_out_an_idle_bound_after_the_last() -> None:
    drivers = {"swarmgate.providers": {"paced": paced([0.03] * 3, stall=5)}}
    async with ProviderManager(stream_config(streamIdle=200), drivers=drivers) as manager:
        last_event = 0.0
        events = []
        with anyio.fail_after(3):
            async for event in manager.stream(prompt="hi", model="m", errors="event"):
                if isinstance(event, TextDelta):
                    last_event = anyio.current_time()
                events.append(event)
        stalled_for = anyio.current_time() - last_event
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert isinstance(error.error, ProviderTimeoutError)
    assert str(error.error).endswith("stream stalled: no event within 0.2s")
    assert error.partial == "w0 w1 w2 "
    assert 0.195 <= stalled_for < 1.0


async def test_a_slow_first_token_times_out_at_the_first_token_bound() -> None:
    drivers = {"swarmgate.providers": {"paced": paced([5])}}
    async with ProviderManager(stream_config(firstToken=80, streamIdle=1000), drivers=drivers) as manager:
        started = anyio.current_time()
        with anyio.fail_after(3):
            events = await collect(manager.stream(prompt="hi", model="m", errors="event"))
        elapsed = anyio.current_time() - started
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert error.error.attempts[0].error == "no first token within 0.08s"
    assert 0.075 <= elapsed < 0.6


async def test_the_request_deadline_caps_a_stream_whose_events_keep_coming() -> None:
    """Events every 40 ms would satisfy the 300 ms idle bound forever; the total (400 ms) ends it."""
    drivers = {"swarmgate.providers": {"paced": paced([0.04] * 50)}}
    async with ProviderManager(stream_config(streamIdle=300), drivers=drivers) as manager:
        started = anyio.current_time()
        with anyio.fail_after(3):
            events = await collect(manager.stream(prompt="hi", model="m", errors="event", timeouts={"total": 400}))
        elapsed = anyio.current_time() - started
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert isinstance(error.error, ProviderTimeoutError)
    assert "the request's total deadline passed (stream stalled: no event)" in str(error.error)
    assert 0.39 <= elapsed < 1.2


async def test_a_cancelled_caller_records_a_cancelled_attempt_with_its_partial_usage() -> None:
    failures: list[Any] = []

    class Observer:
        @hookimpl
        async def request_failed(self, request: Any, error: Any, context: Any) -> None:
            failures.append((error, list(context.attempts)))

    drivers = {"swarmgate.providers": {"paced": paced([0.01, 0.01, 5])}}
    async with ProviderManager(stream_config(streamIdle=1000), drivers=drivers, plugins=[Observer()]) as manager:
        received: list[Any] = []
        with anyio.move_on_after(0.2) as scope:
            async for event in manager.stream(prompt="hi", model="m"):
                received.append(event)
        assert scope.cancelled_caught
        await anyio.sleep(1.1)  # past the idle bound: the attempt's watchdog must be gone
        assert cancel_requests() == 0
        handle = manager.handle("primary")
        assert handle is not None
        assert handle.inflight == 0
    assert "".join(e.text for e in received if isinstance(e, TextDelta)) == "w0 w1 "
    [(error, attempts)] = failures
    assert isinstance(error, RequestCancelledError)
    [attempt] = attempts
    assert attempt.error_kind == "cancelled"
    assert attempt.tokens.output > 0
    assert attempt.cost > 0


async def test_a_complete_attempt_times_out_then_fails_over() -> None:
    class Slow(ScriptedProvider):
        async def complete(self, call: Any) -> Any:
            await anyio.sleep(5)

    drivers = {"swarmgate.providers": {"slow": Slow, "scripted": ScriptedProvider}}
    cfg = {
        "providers": {
            "primary": {"type": "slow", "priority": 1, "timeout": 80, "models": {"m": {}}},
            "backup": {"type": "scripted", "priority": 2, "timeout": 2000, "models": {"m": {}}},
        }
    }
    async with ProviderManager(cfg, drivers=drivers) as manager:
        started = anyio.current_time()
        with anyio.fail_after(3):
            response = await manager.complete(prompt="hi", model="m")
        elapsed = anyio.current_time() - started
        await anyio.sleep(0.1)
        assert cancel_requests() == 0
    assert response.provider == "backup"
    assert response.attempts[0].error == "no answer within 0.08s"
    assert 0.075 <= elapsed < 0.6


async def test_a_cancelled_complete_is_recorded_and_leaves_no_timer_behind() -> None:
    class Slow(ScriptedProvider):
        async def complete(self, call: Any) -> Any:
            await anyio.sleep(5)

    failures: list[Any] = []

    class Observer:
        @hookimpl
        async def request_failed(self, request: Any, error: Any, context: Any) -> None:
            failures.append(list(context.attempts))

    drivers = {"swarmgate.providers": {"slow": Slow}}
    cfg = {"providers": {"primary": {"type": "slow", "timeout": 150, "models": {"m": {}}}}}
    async with ProviderManager(cfg, drivers=drivers, plugins=[Observer()]) as manager:
        with anyio.move_on_after(0.05) as scope:
            await manager.complete(prompt="hi", model="m")
        assert scope.cancelled_caught
        await anyio.sleep(0.2)  # past the attempt's timeout
        assert cancel_requests() == 0
    [[attempt]] = failures
    assert attempt.error_kind == "cancelled"


# -- the shared asyncio timer -----------------------------------------------------


async def test_concurrent_guards_each_time_out_at_their_own_deadline() -> None:
    """Guards in several tasks share one timer: a far deadline registered first
    does not delay a near one, and guards that finish in time are left alone."""
    timed_out: dict[str, float] = {}
    finished: list[str] = []
    started = anyio.current_time()

    async def guarded(name: str, bound: float, work: float) -> None:
        watchdog = new_watchdog()
        try:
            with watchdog.until(watchdog.now() + bound):
                await anyio.sleep(work)
            finished.append(name)
        except TimeoutError:
            timed_out[name] = anyio.current_time() - started
        finally:
            watchdog.close()

    async with anyio.create_task_group() as group:
        group.start_soon(guarded, "far", 5.0, 0.3)
        group.start_soon(guarded, "near", 0.05, 2.0)
        group.start_soon(guarded, "middle", 0.3, 2.0)
        group.start_soon(guarded, "quick", 0.5, 0.01)
    assert sorted(finished) == ["far", "quick"]
    assert sorted(timed_out) == ["middle", "near"]
    assert 0.045 <= timed_out["near"] < 0.25
    assert 0.295 <= timed_out["middle"] < 1.0


def test_the_shared_timer_does_not_keep_a_finished_loop_alive() -> None:
    import gc
    import weakref

    async def use() -> None:
        watchdog = new_watchdog()
        with watchdog.until(watchdog.now() + 60):
            await asyncio.sleep(0)
        watchdog.close()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(use())
    loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None
