"""Single VM (Docker Compose) or Kubernetes (Helm), requirements side by side."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual import on
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import RadioSet, Static

from screens.base import StepScreen
from screens.widgets.toggles import Choice, Choices

# From the vendor's deployment requirements (REQUIREMENTS.md); each is checked on step 4.
REQUIREMENTS = {
    "compose": ("Single VM · Docker Compose", [
        "Ubuntu 20.04+, x86_64",
        "4 CPUs, 16 GB memory",
        "60 GB disk, 20 GB free",
        "port 443 free (80 optional)",
        "Docker 20.10+",
        "Compose 1.29+ or the v2 plugin",
        "HTTPS out to CARTO and Google",
        "here, or another VM over SSH",
    ]),
    "kubernetes": ("Kubernetes · Helm", [
        "Kubernetes 1.12+",
        "Helm 3.6.0+",
        "3 nodes: 2 vCPU, 16 GB each",
        "may install in the namespace",
        "StorageClass (in-cluster DB)",
        "HTTPS out to CARTO and Google",
        "kubeconfig on this machine",
    ]),
}


class PlatformScreen(StepScreen):
    STEP = "platform"
    HINT = ("Single VM suits most installations; Kubernetes needs an existing cluster. "
            "↑↓ choose, Ctrl+N goes on, F1 helps.")

    def compose_body(self) -> Iterable[Widget]:
        chosen = self.state.answers.platform
        yield Static("Where will CARTO run?", classes="section-title first")
        yield Choices(
            Choice("Single VM with Docker Compose (recommended for most)",
                        value=chosen == "compose", id="compose"),
            Choice("Kubernetes cluster with Helm", value=chosen == "kubernetes",
                        id="kubernetes"),
            id="platform-choice", compact=True,
        )
        with Horizontal(id="platform-columns"):
            for key, (title, items) in REQUIREMENTS.items():
                text = Text()
                text.append(title + "\n", style="bold")
                for item in items:
                    text.append(f" • {item}\n")
                card = Static(text, id=f"card-{key}", classes="platform-card")
                card.set_class(key == chosen, "-chosen")
                # Both cards as tall as the longer list (title, items, borders).
                card.styles.height = max(len(i) for _, i in REQUIREMENTS.values()) + 3
                yield card

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(RadioSet).focus()

    @property
    def chosen(self) -> str:
        pressed = self.query_one(RadioSet).pressed_button
        return pressed.id if pressed is not None and pressed.id else "compose"

    @on(RadioSet.Changed)
    def _changed(self, event: RadioSet.Changed) -> None:
        for key in REQUIREMENTS:
            self.query_one(f"#card-{key}").set_class(key == self.chosen, "-chosen")

    def commit(self) -> None:
        if self.state.answers.platform != self.chosen:
            self.state.answers.platform = self.chosen
            self.state.results.clear()
            self.state.checked.clear()
