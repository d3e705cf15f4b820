#!/usr/bin/env python3
"""How fast the wizard's first screen is ready, against the floor of a minimal Textual app.

    python benchmarks/bench_wizard.py [--runs N] [--check]

Both programs start the same way, in the same run: a fresh Python process in an 80x24
pseudo-terminal (pexpect), from an empty working directory. The clock stops when the first
screen is interactive: its text is on the terminal AND a key pressed after that is answered
by that screen (the wizard's Welcome opens its quit dialog on Ctrl+Q; the minimal app
changes its label on the same key). The minimal app is the floor: Python, Textual's import,
its first paint, one answered key.

Figures: medians of first paint and time to interactive for each, wizard / minimal
(goal <= 1.5x); and, for information, the wizard's time until Ctrl+N has built the second
step (Platform). `--check` exits 1 when the goal is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOAL = 1.5

MINIMAL_APP = '''
from textual.app import App
from textual.widgets import Label

class Minimal(App):
    BINDINGS = [("ctrl+q", "answer")]

    def compose(self):
        yield Label("Minimal app ready", id="label")

    def action_answer(self):
        self.query_one("#label", Label).update("Minimal app answered")

Minimal().run()
'''


CTRL_Q, CTRL_N = "\x11", "\x0e"


def time_to_interactive(argv: list[str], cwd: Path, first: str,
                        keys: list[tuple[str, str]], env: dict[str, str]) -> list[float]:
    """Seconds until `first` shows, then until each (key, expected text) is answered."""
    import pexpect

    start = time.perf_counter()
    child = pexpect.spawn(argv[0], argv[1:], cwd=str(cwd), env=env, encoding="utf-8",
                          dimensions=(24, 80), timeout=30)
    times = []
    try:
        child.expect_exact(first)
        times.append(time.perf_counter() - start)
        for key, answered in keys:
            child.send(key)
            child.expect_exact(answered)
            times.append(time.perf_counter() - start)
    finally:
        child.terminate(force=True)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--check", action="store_true", help=f"exit 1 above {GOAL}x")
    args = parser.parse_args()

    env = dict(os.environ)
    env.update({"PYTHONPATH": str(REPO), "TERM": "xterm-256color", "COLUMNS": "80",
                "LINES": "24"})
    env.pop("NO_COLOR", None)
    with tempfile.TemporaryDirectory(prefix="bench-wizard-") as tmp:
        root = Path(tmp)
        script = root / "minimal_app.py"
        script.write_text(MINIMAL_APP)
        wizard: list[list[float]] = []
        minimal: list[list[float]] = []
        second: list[float] = []
        # One warm-up each (bytecode caches, page cache), then alternate so both see the
        # same machine load.
        for run in range(args.runs + 1):
            cwd = root / f"run{run}"
            cwd.mkdir()
            w = time_to_interactive([sys.executable, "-m", "screens"], cwd, "Have ready",
                                    [(CTRL_Q, "Quit the installer?")], env)
            m = time_to_interactive([sys.executable, str(script)], cwd, "Minimal app ready",
                                    [(CTRL_Q, "Minimal app answered")], env)
            s = time_to_interactive([sys.executable, "-m", "screens"], cwd, "Have ready",
                                    [(CTRL_N, "Where will CARTO run?")], env)
            if run:
                wizard.append(w)
                minimal.append(m)
                second.append(s[1])
    w_paint = statistics.median(t[0] for t in wizard)
    w_ready = statistics.median(t[1] for t in wizard)
    m_paint = statistics.median(t[0] for t in minimal)
    m_ready = statistics.median(t[1] for t in minimal)
    ratio = w_ready / m_ready
    print(f"runs: {args.runs} each (after one warm-up), medians")
    print(f"minimal Textual app: first paint {m_paint * 1000:.0f} ms, "
          f"interactive {m_ready * 1000:.0f} ms")
    print(f"carto-installer wizard: first paint {w_paint * 1000:.0f} ms, "
          f"interactive {w_ready * 1000:.0f} ms")
    print(f"wizard / minimal (interactive): {ratio:.2f}x  (goal <= {GOAL}x)")
    print(f"for information: Ctrl+N on the Welcome shows the Platform step at "
          f"{statistics.median(second) * 1000:.0f} ms after launch")
    if args.check and ratio > GOAL:
        print("goal missed")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
