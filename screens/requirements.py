"""Every requirement of the machine (or cluster) checked live, in parallel.

Select a check to see what was measured against what is required and how to fix it. A failed
check blocks Next until it passes on a re-run, or the user accepts that named risk.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual.widget import Widget

from screens.base import StepScreen
from screens.widgets.check_list import CheckDetail, CheckList

if TYPE_CHECKING:
    from installer.checks.base import CheckResult


class RequirementsScreen(StepScreen):
    STEP = "requirements"
    AUTO_CHECKS = True
    HINT = ("↑↓ select a check · r re-runs it · Ctrl+R re-runs all · a accepts a failed "
            "check's risk")

    def compose_body(self) -> Iterable[Widget]:
        yield CheckList(is_accepted=self.state.is_accepted, id="requirements-list",
                        empty_text="The checks start in a moment…")
        yield CheckDetail()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(CheckList).focus()

    def checks_finished(self, results: list[CheckResult]) -> None:
        if self.state.blocking(self.STEP):
            self.set_hint("Some requirements are not met: select one to see the fix. Fix it "
                          "and press r, or press a to accept the risk and go on.")
        else:
            self.set_hint("The machine meets the requirements. Ctrl+N goes on.")
