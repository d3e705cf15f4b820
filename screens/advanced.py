"""Advanced settings, shown collapsed at the end of the Network step: own buckets, a private CA,
the Google Maps key, a registry login, and on Kubernetes the NodePort or your own ingress.

Every field comes from its declaration in installer/answers/ (label, help on the hint line,
validator); `installer.answers.check_storage_answers` judges the `storage:` section as a whole,
as it does for an answers file. The storage.* checks run with the step's egress checks.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Collapsible, RadioSet, Static

from installer.answers import (
    STORAGE_PROVIDERS,
    Answers,
    StorageSettings,
)
from installer.answers.sections import ADVANCED, STORAGE
from installer.errors import AnswersError
from installer.session import check_advanced, expose_as_asked
from screens.fields import PROVIDER_TITLES
from screens.sections import input_id, section_widgets, show_section
from screens.widgets.field_input import FieldInput
from screens.widgets.toggles import Choice, Tick

TITLE = "Advanced settings (own buckets, private CA, registry login, Maps key)"
INTRO = ("Optional. Each field explains itself on the hint line when focused; leave a field "
         "empty to keep CARTO's default.")


def _id(path: str) -> str:
    return "#" + input_id(path)


def advanced_widgets(answers: Answers) -> Iterable[Widget]:
    """The collapsed section; yield it inside the step's scroll area."""
    storage = answers.storage
    provider = storage.provider if storage and storage.provider else "s3"
    with Collapsible(title=TITLE, collapsed=True, id="advanced"):
        yield Static(INTRO, classes="advanced-intro")
        yield Tick("Use my own buckets (instead of the ones CARTO provides)",
                   storage is not None, id="adv-own-buckets", compact=True)
        with Vertical(id="adv-storage", classes="form"):
            yield RadioSet(*(Choice(PROVIDER_TITLES[p], value=p == provider, id=f"adv-prov-{p}")
                             for p in STORAGE_PROVIDERS), id="adv-provider", compact=True)
            # Every provider's fields; `sync` shows the chosen provider's.
            yield from section_widgets(STORAGE, answers, every=True)
            yield Tick("Thumbnails are public (the bucket allows public objects)",
                       storage.thumbnails_public if storage else True, id="adv-public",
                       compact=True)
        with Vertical(id="adv-other", classes="form"):
            yield from section_widgets(ADVANCED, answers)  # those of the platform chosen
            if answers.platform == "kubernetes":
                yield Tick("TLS ends at my own Ingress/Gateway (router service ClusterIP)",
                           answers.kubernetes.external_tls, id="adv-external-tls",
                           compact=True)


class AdvancedForm:
    """Reads and writes the section's widgets for the step that holds it."""

    def __init__(self, screen: Any) -> None:
        self.screen = screen

    @property
    def own_buckets(self) -> bool:
        return bool(self.screen.query_one("#adv-own-buckets", Tick).value)

    @property
    def provider(self) -> str:
        pressed = self.screen.query_one("#adv-provider", RadioSet).pressed_button
        return pressed.id.removeprefix("adv-prov-") if pressed is not None and pressed.id \
            else "s3"

    def _chosen(self) -> Answers:
        """The answers with the provider chosen on screen (for which storage fields show)."""
        probe: Answers = copy.deepcopy(self.screen.state.answers)
        probe.storage = StorageSettings(provider=self.provider)
        return probe

    def sync(self) -> None:
        """Show the storage form when ticked, and only the chosen provider's fields."""
        self.screen.query_one("#adv-storage").display = self.own_buckets
        show_section(self.screen, STORAGE, self._chosen())

    def _storage_fields(self) -> list[FieldInput]:
        return [self.screen.query_one(_id(ask.path), FieldInput)
                for ask in STORAGE.shown_asks(self._chosen())]

    def fields(self) -> list[FieldInput]:
        """The inputs that count now (hidden ones do not)."""
        out: list[FieldInput] = []
        for ask in ADVANCED.shown_asks(self.screen.state.answers):
            out.append(self.screen.query_one(_id(ask.path), FieldInput))
        if self.own_buckets:
            out += self._storage_fields()
        return out

    def is_mine(self, field: FieldInput) -> bool:
        return any(node.id == "advanced" for node in field.ancestors)

    def validate(self) -> tuple[FieldInput | None, str] | None:
        for field in self.fields():
            if field.error is not None:
                self._open()
                return field, f"{field.spec.label}: {field.error}"
        trial = copy.deepcopy(self.screen.state.answers)
        self.commit(trial)
        try:
            check_advanced(trial)
        except AnswersError as exc:
            self._open()
            path = exc.path.removesuffix("_env")
            culprit = self.screen.query(_id(path)).first(FieldInput) \
                if path and self.screen.query(_id(path)) else None
            return culprit, f"{exc.message}" + (f" ({exc.path})" if exc.path else "")
        return None

    def _open(self) -> None:
        self.screen.query_one("#advanced", Collapsible).collapsed = False

    def _store(self, answers: Answers) -> None:
        if self.own_buckets:
            answers.storage = StorageSettings(provider=self.provider)
            for field in self._storage_fields():
                field.spec.set(answers, field.value)
            answers.storage.thumbnails_public = bool(
                self.screen.query_one("#adv-public", Tick).value)
        else:
            answers.storage = None

    def commit(self, answers: Answers) -> None:
        self._store(answers)
        for ask in ADVANCED.shown_asks(answers):
            field = self.screen.query_one(_id(ask.path), FieldInput)
            field.spec.set(answers, field.value)
        if answers.platform == "kubernetes":
            answers.kubernetes.external_tls = bool(
                self.screen.query_one("#adv-external-tls", Tick).value)
        expose_as_asked(answers)
