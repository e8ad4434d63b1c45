"""Start a coroutine at once, and make it a task only if it has to wait.

`bot.inbound_log` runs every message's handler as a task, so that the handler can go
on after the reply deadline. Most handlers answer a bound member's "积分" from SQLite
without ever waiting (`bot.quick` reads on the event loop), and a task for them costs
more than the answer: a Task, a loop turn to start it, a deadline timer and a waiter.
`start(coro)` runs the coroutine up to its first suspension right away — what Python
3.12's eager task factory does. Finished by then: a completed future. Otherwise the
rest runs in a task that resumes the coroutine where it stopped, and the future is that
task (cancelling it cancels what the coroutine waits for, as with any task).

Unlike 3.12's eager tasks, the part before the first wait runs as part of the
caller's task (`asyncio.current_task()` is the caller's there): nothing in it may
arm a timeout that cancels "the current task" later. The bot's handlers do their
first wait on the database, before any HTTP call with a timeout.

`finished_by(task, deadline)` waits for such a future until a loop time and says
whether it finished (it keeps running either way).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def start(coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    loop = asyncio.get_running_loop()
    try:
        waiting_for = coro.send(None)
    except StopIteration as done:
        future: asyncio.Future[T] = loop.create_future()
        future.set_result(done.value)
        return future
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 — handed over, like a task's exception
        future = loop.create_future()
        future.set_exception(exc)
        return future
    return asyncio.ensure_future(_resume(coro, waiting_for))


async def _resume(coro: Coroutine[Any, Any, T], waiting_for: Any) -> T:
    """Drive `coro` on from a suspension at which it yielded `waiting_for` (an asyncio
    future, or None for a bare yield such as `asyncio.sleep(0)`)."""
    while True:
        throw: BaseException | None = None
        try:
            if waiting_for is None:
                await asyncio.sleep(0)
            else:
                # `coro`'s own await marked the future as waited for; a task clears that
                # mark when it takes the future over, and so does this one.
                waiting_for._asyncio_future_blocking = False
                await waiting_for  # its result or error is read by `coro` when resumed
        except asyncio.CancelledError as exc:
            if waiting_for is None or not waiting_for.cancelled():
                throw = exc  # this task was cancelled, not what `coro` waits for
        except Exception:  # noqa: S110 — `coro` gets it from the future when it resumes
            pass
        try:
            waiting_for = coro.throw(throw) if throw is not None else coro.send(None)
        except StopIteration as done:
            return done.value


async def finished_by(task: asyncio.Future, deadline: float) -> bool:
    """Wait for `task` until the loop time `deadline`; whether it finished (it keeps
    running either way). What `asyncio.wait` does for one task, without its sets."""
    if task.done():
        return True
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_=None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_at(deadline, wake)
    task.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    return task.done()
