"""Work that runs in a thread while the caller's thread stays free to be cancelled.

Both front ends run the slow calls (checks, connecting, rendering, deploying) off the thread
that draws the screen or reads the keyboard, and wait for the outcome in a way a cancel can
cut short. The outcome (a value or the exception raised) is handed to the waiting thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar, cast

T = TypeVar("T")

POLL = 0.05  # seconds between looks at the cancel flag


class Cancelled(Exception):
    """The user stopped the work (Ctrl-C, Back or Quit)."""


class Handoff(Generic[T]):
    """One value another thread gives (an answer, a result), waited for with a cancel."""

    def __init__(self) -> None:
        self._given = threading.Event()
        self._value: T | None = None

    def give(self, value: T) -> None:
        self._value = value
        self._given.set()

    @property
    def given(self) -> bool:
        return self._given.is_set()

    def wait(self, cancel: threading.Event | None = None, poll: float = POLL) -> T:
        """The value once given; raises Cancelled as soon as `cancel` is set before that."""
        while not self._given.is_set():
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            self._given.wait(poll)
        return cast(T, self._value)  # given, so set to a T


class Background(Generic[T]):
    """`work` started in a daemon thread; its value, or the exception it raised, for the
    thread that waits on it."""

    def __init__(self, work: Callable[[], T], name: str) -> None:
        self._work = work
        self._outcome: Handoff[tuple[T | None, BaseException | None]] = Handoff()
        self.done = threading.Event()  # set when the work ended, however it ended
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            outcome: tuple[T | None, BaseException | None] = (self._work(), None)
        except BaseException as exc:  # handed to the waiting thread
            outcome = (None, exc)
        self._outcome.give(outcome)
        self.done.set()

    @property
    def error(self) -> BaseException | None:
        """What the work raised, once `done` (None: it returned, or it is still running)."""
        return self._outcome.wait()[1] if self.done.is_set() else None

    def join(self) -> None:
        """Wait, uncancellably, for the work to end (after asking it to stop)."""
        self._thread.join()

    def wait(self, cancel: threading.Event | None = None, poll: float = POLL) -> T:
        """The work's value; raises what it raised, or Cancelled as soon as `cancel` is set
        (the work is abandoned: only read-only work may be left to end on its own)."""
        value, error = self._outcome.wait(cancel, poll)
        if error is not None:
            raise error
        return cast(T, value)  # no error, so the work returned a T


def run_cancellable(work: Callable[[], T], cancel: threading.Event, poll: float = POLL) -> T:
    """Run read-only work in a thread and give up on it as soon as `cancel` is set.

    The checks engine notices a cancel only between checks; a check stuck on a slow network
    would keep the user waiting. Checks change nothing, so abandoning one is safe: it ends on
    its own timeout.
    """
    return Background(work, "wizard-work").wait(cancel, poll)
