"""The wizard's Kubernetes path: the real helm and kubectl against the fixture API server,
from the platform choice to a Helm release, by keyboard.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

import installer.preflight
from installer.checks.base import Status
from screens.app import WizardApp
from tests.services.k8s_apiserver import release_secrets
from tests.support.k8s_package import CHART, client_environment, make_helm_package
from tests.support.wizard import (
    choose,
    fill,
    loopback,
    new_state,
    next_step,
    no_dialog,
    screen_text,
    settle_checks,
    sync,
    wait_until,
)

SIZE = (80, 24)
DOMAIN = "carto-k8s.wizard.test"


@sync
async def test_the_wizard_installs_carto_on_kubernetes_with_helm(
        tmp_path: Path, k8s_cluster: Any, helm_bin: Path, kubectl_bin: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    client_environment(k8s_cluster, monkeypatch, helm_bin.parent, kubectl_bin.parent)
    monkeypatch.setattr(installer.preflight, "system_resolver", loopback)
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # customizations.yaml is written in the working directory
    package = make_helm_package(tmp_path / "package")
    state = new_state(workdir, resolver=loopback)
    app = WizardApp(state)
    async with app.run_test(size=SIZE) as pilot:
        await next_step(pilot, "platform")
        await choose(pilot, "#platform-choice", "#kubernetes")
        await next_step(pilot, "target")
        assert state.answers.platform == "kubernetes"
        await fill(pilot, "kubernetes.kubeconfig", str(k8s_cluster.kubeconfig))
        await fill(pilot, "kubernetes.context", "fixture")
        await fill(pilot, "kubernetes.chart", str(CHART))
        service_type = app.screen.query_one("#f-kubernetes-service_type")
        service_type.input.focus()
        await pilot.press("home", "ctrl+k", "C", "right")  # a choice completes as typed
        assert service_type.text == "ClusterIP" and service_type.error is None
        await next_step(pilot, "requirements")
        await settle_checks(pilot, state, "requirements")
        for check_id in ("k8s.cluster", "k8s.version", "k8s.helm"):
            assert state.results[check_id].status == Status.PASS, state.results[check_id]
        assert not any(r.id.startswith(("host.", "docker.")) for r in state.results.values())
        await next_step(pilot, "domain_tls")
        await fill(pilot, "domain", DOMAIN)
        await settle_checks(pilot, state, "domain_tls")
        await next_step(pilot, "database")
        await choose(pilot, "#db-choice", "#bundled")
        await next_step(pilot, "license")
        assert "carto-values.yaml" in screen_text(app)
        assert not app.screen.query("#f-compose-images_archive")  # Compose only
        await fill(pilot, "package", str(package.path))
        await settle_checks(pilot, state, "license")
        assert state.results["license.package"].status == Status.PASS
        await next_step(pilot, "network")
        await pilot.press("ctrl+r")
        await settle_checks(pilot, state, "network")
        await next_step(pilot, "review")
        review = app.screen
        await wait_until(pilot, lambda: not review.query_one("#next").disabled, timeout=60,
                         what="the render plan")
        assert "customizations.yaml" in str(review.query_one("#review-summary").render())
        assert not (workdir / "customizations.yaml").exists()
        await next_step(pilot, "deploy")
        deploy = app.screen
        await wait_until(pilot, lambda: no_dialog(app) and not deploy.deploying, timeout=180,
                         what="the Helm deployment")
        assert deploy.finished_ok, screen_text(app)
        assert list(deploy.steps) == ["preflight", "render", "secrets", "launch", "address"]
        assert deploy.steps["launch"][0] == "ok" and deploy.steps["address"][0] == "ok"
        await pilot.press("ctrl+n")
        await wait_until(pilot, lambda: not app.is_running, timeout=10, what="the exit")
    assert app.return_value == 0
    assert release_secrets(k8s_cluster, "carto", "carto")  # helm stored the release
    values = yaml.safe_load((workdir / "customizations.yaml").read_text())
    assert DOMAIN in yaml.safe_dump(values)
    assert stat.S_IMODE((workdir / "carto-answers.yaml").stat().st_mode) == 0o600
    saved = yaml.safe_load((workdir / "carto-answers.yaml").read_text())
    assert saved["platform"] == "kubernetes"
    assert saved["kubernetes"]["service_type"] == "ClusterIP"
