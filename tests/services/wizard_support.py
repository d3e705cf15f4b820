"""Helpers for driving the wizard in tests: the text on screen, terminal input as a real
terminal sends it (bracketed paste goes through Textual's own xterm parser), and waiting for
background work. Textual is imported inside the helpers only, so loading this plugin costs
other test modules nothing.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

BRACKETED_PASTE = "\x1b[200~{}\x1b[201~"


def screen_text(app: Any) -> str:
    """What the terminal shows, as plain text lines."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text.rstrip() for strip in strips)


async def paste(pilot: Any, text: str) -> None:
    """Paste `text` as a terminal does: a bracketed-paste sequence, parsed by Textual's xterm
    parser into the events the app receives from a real terminal."""
    from textual._xterm_parser import XTermParser

    parser = XTermParser()
    events = list(parser.feed(BRACKETED_PASTE.format(text)))
    assert events, "the xterm parser produced no event for a bracketed paste"
    for event in events:
        pilot.app.post_message(event)
    await pilot.pause()


async def wait_until(pilot: Any, condition: Callable[[], bool], *, timeout: float,
                     what: str) -> float:
    """Let the app run until `condition()` holds; the seconds it took. Fails after timeout."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n"
                                 f"{screen_text(pilot.app)}")
        await pilot.pause(0.05)
    return time.monotonic() - start


def new_state(workdir: Path, **kwargs: Any) -> Any:
    from installer.redact import Redactor
    from screens.state import WizardState

    return WizardState(redactor=kwargs.pop("redactor", Redactor()), workdir=workdir, **kwargs)


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in its own event loop (the project has no asyncio pytest plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run
