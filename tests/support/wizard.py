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
    from installer.session import Session

    return Session(redactor=kwargs.pop("redactor", Redactor()), workdir=workdir, **kwargs)


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in its own event loop (the project has no asyncio pytest plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


# --- walking the wizard by keyboard ----------------------------------------------------


def loopback(name: str) -> list[str]:
    """A resolver for which every name is this machine: tests send no traffic elsewhere."""
    return ["127.0.0.1"]


def no_dialog(app: Any) -> bool:
    """Fails at once when a dialog nobody expected is waiting for an answer."""
    from textual.screen import ModalScreen

    assert not isinstance(app.screen, ModalScreen), f"unexpected dialog:\n{screen_text(app)}"
    return True


def step_of(app: Any) -> str:
    from screens.base import StepScreen

    screen = app.screen
    assert isinstance(screen, StepScreen), f"{type(screen).__name__}\n{screen_text(app)}"
    return screen.STEP


async def fill(pilot: Any, path: str, text: str) -> None:
    """Focus a field, clear it with the keyboard and paste `text` into it."""
    from screens.widgets.field_input import FieldInput

    field = pilot.app.screen.query_one("#f-" + path.replace(".", "-"), FieldInput)
    field.input.focus()
    await pilot.press("home", "ctrl+k")
    await paste(pilot, text)
    assert field.input.value == text
    assert field.error is None, f"{path}: {field.error}"


async def next_step(pilot: Any, expected: str, timeout: float = 60) -> None:
    from screens.base import StepScreen

    await pilot.press("ctrl+n")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, StepScreen)
                     and pilot.app.screen.STEP == expected, timeout=timeout,
                     what=f"the {expected} step")


async def settle_checks(pilot: Any, state: Any, step: str, timeout: float = 60) -> None:
    """Wait for the step's checks; accept the risk of each failure, by name, with `a`."""
    from screens.widgets.check_list import CheckList

    screen = pilot.app.screen
    await wait_until(pilot, lambda: no_dialog(pilot.app) and not screen.busy
                     and bool(state.step_results(step)), timeout=timeout,
                     what=f"the {step} checks")
    check_list = screen.query_one(CheckList)
    for result in list(state.blocking(step)):
        check_list.focus()
        check_list.highlighted = check_list.get_option_index(result.id)
        await pilot.press("a")
        assert state.is_accepted(result.id)


async def choose(pilot: Any, radio_set: str, button: str) -> None:
    """Pick a radio button with the keyboard: focus the set, move to it, press Enter."""
    radios = pilot.app.screen.query_one(radio_set)
    radios.focus()
    await pilot.pause()
    wanted = radios.query_one(button)
    for _ in range(len(radios.children)):
        if radios._selected is not None and radios.children[radios._selected] is wanted:
            break
        await pilot.press("down")
    await pilot.press("enter")
    assert wanted.value, f"{button} is not chosen"


PASSPHRASE = "key passphrase: pasted, never shown"


def encrypted_copy(key: Path, dest: Path) -> Path:
    """The identity file protected by PASSPHRASE (its .pub alongside, as ssh-keygen leaves)."""
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_ssh_private_key(key.read_bytes(), password=None)
    dest.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(PASSPHRASE.encode())))
    dest.chmod(0o600)
    public = key.with_name(key.name + ".pub")
    if public.exists():
        dest.with_name(dest.name + ".pub").write_bytes(public.read_bytes())
    return dest
