"""The process the crash tests kill: ``cme run nightly`` with a deterministic kill hook.

Run as ``python crash_child.py --today YYYY-MM-DD`` with the ``CME_*`` settings of the trial
in the environment, plus:

- ``CRASHKIT_POINT`` / ``CRASHKIT_AT``: kill this process with SIGKILL on the ``AT``-th time
  execution reaches ``POINT`` (one of :data:`POINTS`). Unset: run to the end.
- ``CRASHKIT_POINT=timer``: kill ``AT`` milliseconds after the night starts, wherever it
  is then (inside a commit, a rename, a socket write...): not repeatable to the statement,
  so only the extended trials use it.
- ``CRASHKIT_COUNTS``: a file to write, at a normal exit, how many times each point was
  reached (an uninterrupted run tells the tests how many places there are to kill it).

Nothing here changes what the pipeline does: each hook wraps a production function, counts,
and either kills the process or calls through unchanged.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

#: Where a run can be killed, in the order a night reaches them.
POINTS = (
    "agency_request",  # an agency request is about to be sent (connector call in flight)
    "agency_answer",  # an agency has answered; the answer is not recorded yet
    "check_write",  # a chunk's check rows are inserted, the transaction not committed
    "decision_write",  # an outbox row is added in the decision transaction, not committed
    "decided",  # a chunk's decision transaction has committed
    "before_dispatch",  # every decision written, no notification dispatched
    "send_before",  # an outbox row is claimed (`sending`), the channel not yet called
    "send_after",  # the channel delivered the message; the row is not marked `sent`
    "file_unrenamed",  # the file channel wrote and fsynced its temp file, not renamed it
    "before_mark_acknowledged",  # dispatch done; acknowledgements not yet recorded
)

_counts: Counter[str] = Counter()
_lock = threading.Lock()  # tasks run in the task runner's threads
_point = os.environ.get("CRASHKIT_POINT") or None
_at = int(os.environ.get("CRASHKIT_AT") or 0)


def reached(point: str) -> None:
    """Count one arrival at ``point``; SIGKILL this process if it is the chosen one."""
    with _lock:
        _counts[point] += 1
        chosen = point == _point and _counts[point] == _at
    if chosen:
        # Flushed so the parent can see how far the run got; then no cleanup of any kind.
        sys.stdout.write(f"CRASHKIT killing at {point} #{_at}\n")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def _around(owner: Any, name: str, *, before: str | None = None,
            after: str | None = None) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        if before:
            reached(before)
        result = original(*args, **kwargs)
        if after:
            reached(after)
        return result

    setattr(owner, name, sync_wrapper)


def _around_async(owner: Any, name: str, *, before: str | None = None,
                  after: str | None = None) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
        if before:
            reached(before)
        result = await original(*args, **kwargs)
        if after:
            reached(after)
        return result

    setattr(owner, name, async_wrapper)


class _ModuleView:
    """A module's attributes, some of them overridden on this object only."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def install() -> None:
    """Wrap the production functions at each kill point (module attributes, looked up at
    call time by their callers)."""
    import httpx

    import notifications.channels as channels
    import tasks.dispatch as dispatch
    import tasks.tracing as tracing

    class CountingTransport(httpx.AsyncBaseTransport):
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            reached("agency_request")
            # The in-process sandbox has run the agency's handler to the end by now.
            response = await self.inner.handle_async_request(request)
            reached("agency_answer")
            return response

        async def aclose(self) -> None:
            await self.inner.aclose()

    agency_transport = tracing.agency_transport

    def counting_agency_transport(*args: Any, **kwargs: Any) -> httpx.AsyncBaseTransport | None:
        inner = agency_transport(*args, **kwargs)
        if inner is None:
            raise RuntimeError("crash trials run against the in-process sandbox only")
        return CountingTransport(inner)

    tracing.agency_transport = counting_agency_transport  # type: ignore[assignment]
    # Inside the open transaction, after the statement: the kill leaves it uncommitted.
    _around(tracing, "insert_ignoring_duplicates", after="check_write")
    _around(tracing, "queue_message", after="decision_write")
    _around(tracing, "decide_referrals", after="decided")
    _around_async(dispatch, "dispatch_outbox", before="before_dispatch")
    _around(dispatch, "mark_acknowledged", before="before_mark_acknowledged")
    for cls in (channels.FileChannel, channels.SmtpChannel, channels.NotifyChannel):
        _around_async(cls, "send", before="send_before", after="send_after")
    # FileChannel._write: mkstemp → write → fsync → os.replace. The channel module gets its
    # own view of ``os`` so that only its fsync is counted.
    view = _ModuleView(channels.os)
    _around(view, "fsync", after="file_unrenamed")
    channels.os = view  # type: ignore[assignment]


def _write_counts(path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(dict(_counts), fh)


def _kill_later(ms: int) -> None:
    def fire() -> None:
        sys.stdout.write(f"CRASHKIT killing at timer #{ms}\n")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    timer = threading.Timer(ms / 1000, fire)
    timer.daemon = True
    timer.start()


def main(argv: list[str]) -> None:
    install()
    if _point == "timer":
        _kill_later(_at)
    counts_path = os.environ.get("CRASHKIT_COUNTS")
    if counts_path:
        atexit.register(_write_counts, counts_path)
    from cme.cli import main as cme_main

    sys.argv = ["cme", "--debug", "run", "nightly", *argv]
    cme_main()


if __name__ == "__main__":
    main(sys.argv[1:])
