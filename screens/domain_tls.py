"""The domain (validated as typed, then its DNS checked) and the TLS certificate
(your files, checked at once, or a self-signed one generated)."""

from __future__ import annotations

from collections.abc import Iterable

from textual import on
from textual.containers import Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import RadioSet, Static

from installer.answers import field_spec
from installer.answers.sections import DOMAIN, TLS
from screens.base import StepScreen
from screens.sections import section_widgets
from screens.widgets.check_list import CheckList
from screens.widgets.field_input import FieldInput
from screens.widgets.toggles import Choice, Choices


class DomainTLSScreen(StepScreen):
    STEP = "domain_tls"
    AUTO_CHECKS = True
    RECHECK_AS_YOU_TYPE = True
    HINT = "The domain users will open CARTO at, e.g. carto.example.com."

    def compose_body(self) -> Iterable[Widget]:
        a = self.state.answers
        own = TLS.shown(a)  # a file given: the own-files choice
        with VerticalScroll(classes="scroll-body"):
            yield Static(DOMAIN.title, classes="section-title first")
            yield from section_widgets(DOMAIN, a)
            yield Static("TLS certificate", classes="section-title")
            yield Choices(
                Choice("Generate a self-signed certificate (browsers will warn)",
                            value=not own, id="self-signed"),
                Choice("Use my certificate and key files", value=own, id="own"),
                id="tls-choice", compact=True,
            )
            with Vertical(id="tls-files", classes="form"):
                # Both files or neither: each is required once "my files" is chosen.
                yield from section_widgets(TLS, a, every=True)
            yield CheckList(is_accepted=self.state.is_accepted, classes="inline-checks",
                            empty_text="DNS and certificate results appear here.")

    def on_mount(self) -> None:
        self._sync()  # first: the checks started on mount judge only the fields shown
        super().on_mount()
        self.query_one("#f-domain", FieldInput).input.focus()

    def checks_wanted(self) -> bool:
        return self.validate() is None and self.checks_stale()

    @property
    def own_files(self) -> bool:
        pressed = self.query_one("#tls-choice", RadioSet).pressed_button
        return pressed is not None and pressed.id == "own"

    def _sync(self) -> None:
        self.query_one("#tls-files").display = self.own_files

    @on(RadioSet.Changed)
    def _choice(self, event: RadioSet.Changed) -> None:
        self._sync()
        self.schedule_recheck()

    def commit(self) -> None:
        self.store(self.shown_fields())  # the domain, and the TLS files when chosen
        if not self.own_files:
            for path in TLS.paths:
                field_spec(path).set(self.state.answers, None)
