"""The cloud for buckets, the data warehouses and features in use, an optional proxy;
then outbound HTTPS to every host that choice needs, checked from the target."""

from __future__ import annotations

import copy
from collections.abc import Iterable

from textual import on
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Checkbox, RadioSet, Static

from installer.answers import CLOUDS, FEATURES, WAREHOUSES, Answers, ProxySettings, field_spec
from installer.answers.sections import NETWORK_HOSTS, PROXY
from screens.advanced import AdvancedForm, advanced_widgets
from screens.base import StepScreen
from screens.fields import CHOICE_TITLES
from screens.sections import section_problem, section_widgets, show_section
from screens.widgets.check_list import CheckList
from screens.widgets.field_input import FieldInput
from screens.widgets.toggles import Choice, Choices, Tick


class NetworkScreen(StepScreen):
    STEP = "network"
    HINT = ("Space ticks an item. Next checks outbound HTTPS to every host these choices "
            "need (Ctrl+R checks now).")

    def compose_body(self) -> Iterable[Widget]:
        a = self.state.answers
        n = a.network
        with VerticalScroll(classes="scroll-body"):
            yield Static("Cloud for storage buckets", classes="section-title first")
            yield Choices(*(Choice(CHOICE_TITLES[c], value=n.cloud == c, id=f"cloud-{c}")
                             for c in CLOUDS), id="cloud", compact=True)
            with Horizontal(id="network-choices"):
                with Vertical(id="warehouses"):
                    yield Static("Data warehouses", classes="section-title")
                    for w in WAREHOUSES:
                        yield Tick(CHOICE_TITLES[w], w in n.warehouses, id=f"wh-{w}",
                                   compact=True)
                with Vertical(id="features"):
                    yield Static("Features", classes="section-title")
                    for f in FEATURES:
                        yield Tick(CHOICE_TITLES[f], f in n.features, id=f"ft-{f}",
                                   compact=True)
            with Vertical(classes="form"):
                yield from section_widgets(NETWORK_HOSTS, a, every=True)
            yield Tick("Outbound traffic goes through an HTTP proxy", n.proxy is not None,
                           id="use-proxy", compact=True)
            with Vertical(id="proxy-form", classes="form"):
                yield from section_widgets(PROXY, a, every=True)
            yield from advanced_widgets(a)  # collapsed: screens/advanced.py
            yield CheckList(is_accepted=self.state.is_accepted, classes="inline-checks",
                            empty_text="Egress results appear here.")

    def on_mount(self) -> None:
        super().on_mount()
        self._sync()
        self.query_one("#cloud", RadioSet).focus()

    @property
    def cloud(self) -> str:
        pressed = self.query_one("#cloud", RadioSet).pressed_button
        return pressed.id.removeprefix("cloud-") if pressed is not None and pressed.id else "other"

    def _choices(self) -> tuple[list[str], list[str]]:
        warehouses = [w for w in WAREHOUSES if self.query_one(f"#wh-{w}", Tick).value]
        features = [f for f in FEATURES if self.query_one(f"#ft-{f}", Tick).value]
        return warehouses, features

    def _probe(self) -> Answers:
        """The answers as the choices on screen make them (for what they show)."""
        probe = copy.deepcopy(self.state.answers)
        probe.network.cloud = self.cloud
        probe.network.warehouses, probe.network.features = self._choices()
        return probe

    def _sync(self) -> None:
        # Show the extra host fields the current choices need.
        show_section(self, NETWORK_HOSTS, self._probe())
        self.query_one("#proxy-form").display = self.query_one("#use-proxy", Checkbox).value
        AdvancedForm(self).sync()

    @on(RadioSet.Changed)
    @on(Checkbox.Changed)
    def _changed(self, event: object) -> None:
        self._sync()

    def _fields(self) -> list[FieldInput]:
        """The inputs shown (the proxy's when ticked, the hosts the choices need); the
        Advanced settings' are judged and stored by AdvancedForm."""
        advanced = AdvancedForm(self)
        return [field for field in self.shown_fields() if not advanced.is_mine(field)]

    def validate(self) -> tuple[FieldInput | None, str] | None:
        for field in self._fields():
            error = field.error
            if error is not None:
                return field, f"{field.spec.label}: {error}"
        if self.query_one("#use-proxy", Checkbox).value:
            problem = section_problem(self, PROXY, self.state.answers)
            if problem is not None:
                return problem
        return AdvancedForm(self).validate()

    def commit(self) -> None:
        a = self.state.answers
        a.network.cloud = self.cloud
        a.network.warehouses, a.network.features = self._choices()
        if self.query_one("#use-proxy", Checkbox).value:
            a.network.proxy = a.network.proxy or ProxySettings()
        else:
            a.network.proxy = None
        for path in NETWORK_HOSTS.paths:  # the shown ones are set again below
            field_spec(path).set(a, None)
        for field in self._fields():
            field.spec.set(a, field.value)
        AdvancedForm(self).commit(a)

