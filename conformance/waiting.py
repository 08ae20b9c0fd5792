"""One way to wait: poll a condition until it holds, never sleep a fixed time.

tests/waiting.py is the same helper; the two suites do not import each other
(conformance runs against any runtime without pyrun or tests/)."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def eventually(predicate: Callable[[], T], timeout: float = 5.0, what: str = "",
               interval: float = 0.02, ignore: tuple[type[BaseException], ...] = ()) -> T:
    """Call `predicate` until it returns something truthy and return that.

    Exceptions listed in `ignore` count as "not yet" (a file not written yet).
    On timeout raise AssertionError naming `what` and the last value seen, so a
    condition that never comes true fails the test instead of passing it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value: object = predicate()
        except ignore as exc:
            value = exc
        else:
            if value:
                return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true after {timeout}s: {what or predicate!r}; last value: {value!r}")
        time.sleep(interval)
