"""Checks as they run: grouped by category, a spinner while running, then pass/warn/fail.

`CheckList` shows one line per check; `CheckDetail` shows the highlighted one's observed value,
requirement and fix. The list is fed the engine's own events (CheckStarted / CheckFinished), or
fixed results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.timer import Timer
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from installer.checks.base import CheckResult, Status
from installer.checks.engine import CheckFinished, CheckStarted
from installer.report import CATEGORY_TITLES
from installer.safetext import visible

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
MARKS = {
    Status.PASS: ("✔", "green"),
    Status.WARN: ("!", "yellow"),
    Status.FAIL: ("✘", "red"),
    Status.SKIP: ("-", "dim"),
    Status.ERROR: ("?", "magenta"),
}
CATEGORY_ORDER = list(CATEGORY_TITLES)


@dataclass
class Row:
    id: str
    title: str
    result: CheckResult | None = None  # None while running

    @property
    def category(self) -> str:
        return self.id.split(".", 1)[0]


class CheckList(OptionList):
    DEFAULT_CSS = """
    CheckList {
        height: 1fr;
        border: none;
        padding: 0;
        background: $surface;
    }
    CheckList:focus {
        border: none;
        background-tint: $foreground 3%;
    }
    """

    BINDINGS = [
        Binding("a", "accept_risk", "Accept risk"),
        Binding("A", "accept_all", "Accept all", show=False),
        Binding("r", "rerun_one", "Re-run"),
    ]

    class AcceptAllRequested(Message):
        """Accept the risk of every failed check shown (the screen asks first)."""

        def __init__(self, check_list: CheckList) -> None:
            super().__init__()
            self.check_list = check_list

    class RerunRequested(Message):
        """Re-run one check (`check_id`) or all of this list's checks (None)."""

        def __init__(self, check_list: CheckList, check_id: str | None) -> None:
            super().__init__()
            self.check_list = check_list
            self.check_id = check_id

    class AcceptRiskToggled(Message):
        def __init__(self, check_list: CheckList, check_id: str) -> None:
            super().__init__()
            self.check_list = check_list
            self.check_id = check_id

    def __init__(self, *, is_accepted: Callable[[str], bool] | None = None,
                 empty_text: str = "No checks have run yet.", id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.rows: dict[str, Row] = {}
        self.is_accepted = is_accepted or (lambda _id: False)
        self.empty_text = empty_text
        self._frame = 0
        self._timer: Timer | None = None
        self._message = ""

    def on_mount(self) -> None:
        self._rebuild()

    # --- feeding ------------------------------------------------------------------------

    def clear_checks(self, message: str = "") -> None:
        self.rows.clear()
        self._message = message
        self._rebuild()

    def set_results(self, results: Iterable[CheckResult]) -> None:
        self.rows = {r.id: Row(r.id, r.title, r) for r in results}
        self._message = ""
        self._rebuild()

    def show_message(self, message: str) -> None:
        """Text shown when the list is empty (e.g. "Checking..." or an error)."""
        self._message = message
        self._rebuild()

    def handle(self, event: CheckStarted | CheckFinished) -> None:
        if isinstance(event, CheckStarted):
            self.rows[event.id] = Row(event.id, event.title)
        else:
            r = event.result
            self.rows[r.id] = Row(r.id, r.title, r)
        self._rebuild()

    def refresh_marks(self) -> None:
        self._rebuild()

    @property
    def running(self) -> int:
        return sum(1 for row in self.rows.values() if row.result is None)

    def mark_running_cancelled(self) -> None:
        for row in self.rows.values():
            if row.result is None:
                row.result = CheckResult(row.id, row.category, row.title, Status.SKIP, "", "",
                                         "cancelled", "", 0.0)
        self._rebuild()

    @property
    def highlighted_id(self) -> str | None:
        option = self.highlighted_option
        if option is None or option.id is None or option.id.startswith("cat:"):
            return None
        return option.id

    @property
    def highlighted_row(self) -> Row | None:
        check_id = self.highlighted_id
        return self.rows.get(check_id) if check_id else None

    # --- drawing ------------------------------------------------------------------------

    def _ordered(self) -> list[tuple[str, list[Row]]]:
        groups: dict[str, list[Row]] = {}
        for row in self.rows.values():
            groups.setdefault(row.category, []).append(row)
        known = [c for c in CATEGORY_ORDER if c in groups]
        other = sorted(c for c in groups if c not in CATEGORY_ORDER)
        return [(c, groups[c]) for c in known + other]

    def _prompt(self, row: Row) -> Text:
        text = self._line(row)
        # One line per check: long messages end in an ellipsis (the detail shows them whole).
        width = self.scrollable_content_region.width
        if width > 4:
            text.truncate(width - 1, overflow="ellipsis")
        return text

    def on_resize(self) -> None:
        self._rebuild()

    def _line(self, row: Row) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        if row.result is None:
            text.append(f" {SPINNER[self._frame % len(SPINNER)]} ", style="cyan")
            text.append(f"{row.title:<24.24} ", style="bold")
            text.append("checking…", style="dim")
            return text
        r = row.result
        mark, colour = MARKS[r.status]
        text.append(f" {mark} ", style=f"bold {colour}")
        text.append(f"{row.title:<24.24} ", style="bold")
        if r.status in (Status.FAIL, Status.ERROR) and self.is_accepted(r.id):
            text.append("[risk accepted] ", style="yellow")
        text.append(visible(r.message), style="dim" if r.status == Status.SKIP else "")
        return text

    def _rebuild(self) -> None:
        keep = self.highlighted_id
        options: list[Option] = []
        for category, rows in self._ordered():
            title = CATEGORY_TITLES.get(category, category)
            options.append(Option(Text(title, style="bold underline", no_wrap=True),
                                  id=f"cat:{category}", disabled=True))
            for row in rows:
                options.append(Option(self._prompt(row), id=row.id))
        if not options:
            options.append(Option(Text(self._message or self.empty_text, style="dim"),
                                  id="cat:empty", disabled=True))
        self.set_options(options)
        if keep is not None and keep in self.rows:
            self.highlighted = self.get_option_index(keep)
        elif self.highlighted is None and self.rows:
            first = next(i for i, o in enumerate(options) if not o.disabled)
            self.highlighted = first
        self._tick_if_running()

    def _tick_if_running(self) -> None:
        if self.running and self._timer is None:
            self._timer = self.set_interval(0.1, self._spin)
        elif not self.running and self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _spin(self) -> None:
        self._frame += 1
        for row in self.rows.values():
            if row.result is None:
                self.replace_option_prompt(row.id, self._prompt(row))

    # --- actions ------------------------------------------------------------------------

    def action_accept_risk(self) -> None:
        row = self.highlighted_row
        if row is None or row.result is None:
            return
        if row.result.status not in (Status.FAIL, Status.ERROR):
            self.app.notify("Only a failed check can be accepted as a risk.", timeout=3)
            return
        self.post_message(self.AcceptRiskToggled(self, row.id))

    def action_accept_all(self) -> None:
        self.post_message(self.AcceptAllRequested(self))

    def action_rerun_one(self) -> None:
        self.post_message(self.RerunRequested(self, self.highlighted_id))


def same_fix(rows: Iterable[Row], row: Row | None) -> list[str]:
    """The ids of the warned or failed checks whose fix is the same as `row`'s."""
    from installer.report import fix_pattern

    if row is None or row.result is None or not row.result.remediation:
        return []
    fix = fix_pattern(row.result)
    return [r.id for r in rows if r.result is not None and r.result.remediation
            and fix_pattern(r.result) == fix
            and r.result.status in (Status.WARN, Status.FAIL, Status.ERROR)]


class CheckDetail(Static):
    """Observed vs required and the fix, for one check."""

    DEFAULT_CSS = """
    CheckDetail {
        height: auto;
        max-height: 8;
        padding: 0 1;
        border-top: solid $primary 50%;
    }
    """

    def show(self, row: Row | None, accepted: bool = False,
             same_fix: list[str] | None = None) -> None:
        if row is None:
            self.update(Text("Select a check to see what was measured and how to fix it.",
                             style="dim"))
            return
        self.update(detail_text(row, accepted, same_fix))


def detail_text(row: Row, accepted: bool = False, same_fix: list[str] | None = None) -> Text:
    """One check's detail as the panel shows it, and as the Enter dialog repeats it."""
    text = Text()
    if row.result is None:
        text.append(f"{row.title} ({row.id}): checking…", style="bold")
        return text
    r = row.result
    mark, colour = MARKS[r.status]
    text.append(f"{mark} {r.title}", style=f"bold {colour}")
    text.append(f"  {r.id} · {r.status}\n", style="dim")
    text.append(visible(r.message) + "\n")
    if r.observed or r.required:
        text.append("Observed: ", style="bold")
        text.append(visible(f"{r.observed or '-'}   "))
        text.append("Required: ", style="bold")
        text.append(visible(f"{r.required or '-'}\n"))
    if r.remediation:
        others = [i for i in same_fix or [] if i != r.id]
        text.append("Fix: " if not others else
                    f"Fix (the same for {len(others) + 1} checks, this and "
                    f"{', '.join(others)}): ", style="bold")
        text.append(r.remediation + "\n")
    if r.status in (Status.FAIL, Status.ERROR):
        if accepted:
            text.append("You accepted this risk: it will not stop the deployment "
                        "(press a to withdraw).", style="yellow")
        else:
            text.append("This blocks the deployment: fix it and press r, or press a to "
                        "accept the risk.", style="italic")
    text.rstrip()
    return text
