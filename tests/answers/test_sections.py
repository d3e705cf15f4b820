"""Each step's answers are declared once (installer/answers/sections.py): the screens' required
markers, the plain prompts' required flags, what a resumed session lacks, the step a refused
answer sends the user to, and the validation `render` and `deploy` run all come from it."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from installer.answers import SECTIONS, Answers, ProxySettings, Secret, StorageSettings, validate
from installer.answers.sections import (
    DATABASE,
    DATABASE_TLS,
    DEPLOYMENT,
    JUMP,
    KUBERNETES,
    NETWORK_HOSTS,
    PROXY,
    SSH,
    STORAGE,
    TLS,
    Ask,
    always,
)
from installer.errors import AnswersError
from installer.session import STEP_SPEC, STEP_SPECS, step_for_answer
from screens.app import WizardApp
from screens.base import StepScreen
from screens.sections import input_id
from screens.widgets.field_input import FieldInput
from tests.support.cli import REPO, run_cli
from tests.support.scripted_prompts import ScriptedPrompts
from tests.support.wizard import fill, new_state, sync

SIZE = (80, 24)


def complete(platform: str = "compose") -> Answers:
    """Answers that render and deploy accept (an external database, a package, a domain)."""
    a = Answers(platform=platform, domain="carto.example.com", package="/srv/package")
    a.database.host = "db.internal"
    a.database.admin_password = Secret("admin-pw", "inline")
    a.database.password = Secret("carto-pw", "inline")
    return a


@pytest.fixture()
def ca_file_required() -> Iterator[None]:
    """The declaration changed: the database CA file is required whenever TLS to the database
    is on, by the wizard and by render and deploy alike."""
    original = DATABASE_TLS.asks
    asks = tuple(Ask(a.path, required_when=always, render_requires=always)
                 if a.path == "database.ssl.ca_file" else a for a in original)
    object.__setattr__(DATABASE_TLS, "asks", asks)  # frozen: only this test changes it
    try:
        yield
    finally:
        object.__setattr__(DATABASE_TLS, "asks", original)


async def _ca_marker(tmp_path: Path) -> tuple[bool, str | None]:
    """The Database screen's required marker on the CA file, and its error when empty."""
    state = new_state(tmp_path)
    state.answers.database.ssl.enabled = True
    app = WizardApp(state, start="database", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        field = app.screen.query_one("#" + input_id("database.ssl.ca_file"), FieldInput)
        return field.required, field.error


@sync
async def test_one_declaration_change_moves_the_screen_the_session_and_validate(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    answers = complete()
    answers.database.ssl.enabled = True
    # As declared: the CA file is optional everywhere.
    assert await _ca_marker(tmp_path) == (False, None)
    validate(answers)
    assert STEP_SPEC["database"].missing(answers) == []
    request.getfixturevalue("ca_file_required")
    # One change to the declaration: every door now requires it.
    required, error = await _ca_marker(tmp_path)
    assert required and error == "Database CA file is required"
    assert STEP_SPEC["database"].missing(answers) == ["database.ssl.ca_file"]
    with pytest.raises(AnswersError) as refused:
        validate(answers)
    assert refused.value.path == "database.ssl.ca_file"
    assert refused.value.message == "database.ssl.ca_file: is required for this command"
    answers.database.ssl.enabled = False  # not shown: not required
    validate(answers)


def test_the_plain_prompts_take_required_from_the_declaration(
        tmp_path: Path, ca_file_required: None) -> None:
    from screens.plain import PlainWizard

    asked: list[tuple[str, bool]] = []
    wizard = PlainWizard(new_state(tmp_path))
    wizard.ask_field = lambda path, *, required=False, instruction=None: asked.append(  # type: ignore[method-assign]
        (path, required))
    wizard.ask_section(DATABASE_TLS)
    assert asked == [("database.ssl.mode", False), ("database.ssl.ca_file", True)]


# --- the proxy's URL: a wizard rule both front ends take from the PROXY section -------------

PROXY_URLS = ("network.proxy.https", "network.proxy.http")


async def _network_screen_verdicts(tmp_path: Path, typed: str) -> tuple[tuple[str, str] | None,
                                                                         tuple[str, str] | None]:
    """The Network screen's verdict (the field named, the message) with the proxy ticked and
    nothing typed, then with `typed` given its URL."""
    from textual.widgets import Checkbox

    state = new_state(tmp_path)
    app = WizardApp(state, start="network", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.screen.query_one("#use-proxy", Checkbox).value = True
        await pilot.pause()

        def verdict() -> tuple[str, str] | None:
            screen = app.screen
            assert isinstance(screen, StepScreen)
            problem = screen.validate()
            if problem is None:
                return None
            field, message = problem
            return field.spec.path, message

        before = verdict()
        await fill(pilot, typed, "http://proxy.internal:3128")
        return before, verdict()


def _plain_proxy_prompts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         script: dict[str, list[Any]]) -> tuple[str, ScriptedPrompts]:
    """The plain prompts' PROXY section, the proxy ticked: what they printed, what they asked."""
    from screens.plain import PlainWizard

    prompts = ScriptedPrompts(dict(script)).install(monkeypatch)
    out = io.StringIO()
    wizard = PlainWizard(new_state(tmp_path), out=out)
    wizard.state.answers.network.proxy = ProxySettings()
    wizard.ask_section(PROXY)
    assert prompts.unanswered() == []
    return " ".join(out.getvalue().split()), prompts  # as printed, unwrapped


@sync
async def test_the_proxy_needs_its_url_in_the_screen_from_the_declaration(
        tmp_path: Path) -> None:
    assert PROXY.one_of == PROXY_URLS
    message = PROXY.one_of_missing
    assert message == "give the proxy's URL (HTTPS proxy at least), or untick the proxy"
    # Nothing typed: refused, the HTTPS proxy named; either URL is enough to go on.
    for typed in PROXY_URLS:
        before, after = await _network_screen_verdicts(tmp_path, typed)
        assert before == ("network.proxy.https", message) and after is None, typed
    # One change to the declaration (only the HTTP proxy will do, another message): the
    # screen follows it.
    original = PROXY.one_of, PROXY.one_of_missing
    object.__setattr__(PROXY, "one_of", ("network.proxy.http",))
    object.__setattr__(PROXY, "one_of_missing", "the HTTP proxy, please")
    try:
        before, after = await _network_screen_verdicts(tmp_path, "network.proxy.https")
    finally:
        object.__setattr__(PROXY, "one_of", original[0])
        object.__setattr__(PROXY, "one_of_missing", original[1])
    assert before == after == ("network.proxy.http", "the HTTP proxy, please")


def test_the_plain_prompts_ask_again_until_the_proxy_has_its_url(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text, prompts = _plain_proxy_prompts(tmp_path, monkeypatch, {
        "HTTP proxy:": ["", "http://proxy.internal:3128"], "HTTPS proxy:": ["", ""],
        "No proxy for:": ["", ""], "Proxy CA file:": ["", ""]})
    assert f"✘ {PROXY.one_of_missing}; please answer again" in text
    assert [m for _, m, _ in prompts.asked].count("HTTP proxy:") == 2
    # Given at once: asked once, nothing said.
    text, prompts = _plain_proxy_prompts(tmp_path, monkeypatch, {
        "HTTP proxy:": [""], "HTTPS proxy:": ["http://proxy.internal:3128"],
        "No proxy for:": [""], "Proxy CA file:": [""]})
    assert PROXY.one_of_missing not in text and len(prompts.asked) == 4
    # The declaration changed (the HTTP proxy only): the prompts follow it.
    original = PROXY.one_of
    object.__setattr__(PROXY, "one_of", ("network.proxy.http",))
    try:
        text, _ = _plain_proxy_prompts(tmp_path, monkeypatch, {
            "HTTP proxy:": ["", "http://proxy.internal:3128"],
            "HTTPS proxy:": ["http://proxy.internal:3128", ""],
            "No proxy for:": ["", ""], "Proxy CA file:": ["", ""]})
    finally:
        object.__setattr__(PROXY, "one_of", original)
    assert f"✘ {PROXY.one_of_missing}; please answer again" in text


def test_the_proxy_url_is_the_wizards_rule_not_renders() -> None:
    answers = complete()
    answers.network.proxy = ProxySettings()
    assert STEP_SPEC["network"].missing(answers) == ["network.proxy.https"]
    validate(answers)  # render takes `network.proxy: {}` as no proxy, as it always did
    answers.network.proxy.http = "http://proxy.internal:3128"
    assert STEP_SPEC["network"].missing(answers) == []
    answers.network.proxy = None
    assert STEP_SPEC["network"].missing(answers) == []


@sync
async def test_a_yes_no_answer_of_a_section_is_stored_from_its_tick(tmp_path: Path) -> None:
    """The Target screen stores the SSH section's ticks by their declaration (no field named
    in the screen): the sudo answer follows the tick both ways."""
    from installer.answers import SSHSettings, blank_section
    from screens.widgets.toggles import Tick

    state = new_state(tmp_path)
    state.answers.target = blank_section(SSHSettings)
    state.answers.target.host = "vm.internal"
    app = WizardApp(state, start="target", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, StepScreen)
        tick = screen.query_one("#" + input_id("target.sudo"), Tick)
        for wanted in (not tick.value, tick.value):
            tick.value = wanted
            await pilot.pause()
            screen.commit()
            assert state.answers.target is not None
            assert state.answers.target.sudo is wanted
            assert state.answers.target.host == "vm.internal"


def test_the_plain_advanced_gate_offers_yes_when_an_advanced_answer_is_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from screens.plain import PlainWizard

    gate = "Advanced settings? (own buckets, private CA, registry login, Maps key)"
    offered = []
    for platform, path, value in (("compose", None, None),
                                  ("compose", "google_maps_api_key", Secret("k", "inline")),
                                  ("compose", "compose.registry", "registry.internal:5000"),
                                  ("kubernetes", "kubernetes.node_port", 30443)):
        prompts = ScriptedPrompts({gate: [False]}).install(monkeypatch)
        wizard = PlainWizard(new_state(tmp_path), out=io.StringIO())
        wizard.state.answers.platform = platform
        if path is not None:
            from installer.answers import field_spec

            field_spec(path).set(wizard.state.answers, value)
        wizard.advanced()
        offered.append(prompts.defaults[gate])
    assert offered == [False, True, True, True]


def test_the_help_panel_lists_the_fields_each_platform_asks_for() -> None:
    """The help's field lines follow the sections' `platform`, as the screens do."""
    from installer.answers import field_spec
    from screens.help import step_help

    def labels(step: str, platform: str) -> list[str]:
        return [heading for heading, _ in step_help(step, platform)[1:]]

    def label(path: str) -> str:
        return field_spec(path).label

    assert labels("target", "kubernetes") == [label(p) for p in KUBERNETES.paths]
    assert labels("target", "compose") == [label(p) for p in SSH.paths + JUMP.paths
                                           + DEPLOYMENT.paths]
    assert labels("license", "compose") == [label("package"), label("compose.images_archive")]
    assert labels("license", "kubernetes") == [label("package")]
    # A section for both platforms is listed on both.
    assert labels("database", "kubernetes") == labels("database", "compose") == [
        label(p) for p in DATABASE.paths + DATABASE_TLS.paths]


# --- every door agrees with the declaration -----------------------------------------------------

SCREENS = [("target", "compose"), ("target", "kubernetes"), ("domain_tls", "compose"),
           ("database", "compose"), ("license", "compose"), ("license", "kubernetes"),
           ("network", "compose"), ("network", "kubernetes")]


@sync
async def test_each_screen_marks_required_exactly_what_its_sections_declare(
        tmp_path: Path) -> None:
    for step, platform in SCREENS:
        state = new_state(tmp_path)
        state.answers.platform = platform
        if step == "target" and platform == "compose":
            from installer.answers import JumpHost, SSHSettings, blank_section

            state.answers.target = blank_section(SSHSettings)
            state.answers.target.jump = blank_section(JumpHost)
        app = WizardApp(state, start=step, live=False)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            on_screen = {f.spec.path: f.required for f in app.screen.query(FieldInput)}
            declared = {path: section.is_required(path, state.answers)
                        for section in STEP_SPEC[step].sections for path in section.paths
                        if path in on_screen}
            assert on_screen == declared, (step, platform)
            assert any(declared.values()) or step == "target" and platform == "kubernetes"


def test_the_provider_fields_required_are_those_the_loader_requires() -> None:
    from installer.answers.checks import STORAGE_NEEDS

    for provider, needs in STORAGE_NEEDS.items():
        answers = Answers()
        answers.storage = StorageSettings(provider=provider)
        shown = {a.path for a in STORAGE.shown_asks(answers)}
        required = set(STORAGE.required_paths(answers))
        assert required == {f"storage.{name}" for name, _ in needs} | {
            "storage.buckets.imports", "storage.buckets.thumbnails"}
        assert required <= shown


def test_a_choice_shows_and_requires_the_host_it_needs() -> None:
    answers = Answers()
    assert NETWORK_HOSTS.missing(answers) == []
    answers.network.warehouses = ["snowflake"]
    assert NETWORK_HOSTS.missing(answers) == ["network.snowflake_account_url"]
    answers.network.cloud = "azure"
    assert NETWORK_HOSTS.missing(answers) == ["network.snowflake_account_url",
                                              "network.bucket_host"]
    validate(complete())  # the hosts are the wizard's to ask: render does not need them


def test_both_tls_files_or_neither_is_one_rule() -> None:
    answers = complete()
    answers.tls.certificate_file = "/srv/cert.pem"
    assert TLS.missing(answers) == ["tls.key_file"]
    with pytest.raises(AnswersError) as refused:
        validate(answers)
    assert (refused.value.path, refused.value.message) == (
        "tls.key_file", "tls.key_file: is required when the other TLS file is given")
    assert "or neither to have a self-signed certificate generated" in refused.value.remediation


def test_kubernetes_leaves_the_admin_password_to_the_chart() -> None:
    answers = complete("kubernetes")
    answers.database.admin_password = None
    validate(answers)  # the chart decides (render/helm.require_admin_credentials)
    with pytest.raises(AnswersError) as refused:
        validate(answers, "compose")
    assert refused.value.path == "database.admin_password"
    # The wizard's connection test logs in as the admin on both platforms.
    assert STEP_SPEC["database"].missing(answers) == ["database.admin_password"]


def test_a_refused_answer_names_the_step_that_asks_for_it() -> None:
    assert step_for_answer("database.password_env") == "database"
    assert step_for_answer("compose.directory") == "target"
    assert step_for_answer("tls.key_file") == "domain_tls"
    assert step_for_answer("package") == "license"
    assert step_for_answer("storage.access_key_id_env") == "network"
    assert step_for_answer("kubernetes.node_port") == "network"  # asked in the advanced part
    assert step_for_answer("kubernetes.namespace") == "target"
    assert step_for_answer("platform") == "platform"
    assert step_for_answer("redis.host") is None  # set in the answers file only
    for section in SECTIONS:
        steps = {step_for_answer(p) for p in section.paths}
        owners = [s.id for s in STEP_SPECS if section in s.sections]
        assert steps == set(owners or [None]), section.id


def test_each_rule_is_stated_once() -> None:
    """No front end or render path restates which answers are required: they ask the
    declaration (the grep the lead runs, as a test)."""
    restated = re.compile(r"\brequired\s*=\s*(True\b|path\s*(==|in)\b)|STORAGE_REQUIRED|"
                          r"PATH_STEPS|require\(answers,\s*\"(package|domain|database\.host|"
                          r"database\.password|redis\.host)\"")
    found = []
    for folder in ("installer", "screens"):
        for source in sorted((REPO / folder).rglob("*.py")):
            for number, line in enumerate(source.read_text().splitlines(), 1):
                if restated.search(line) and "add_argument" not in line:
                    found.append(f"{source.relative_to(REPO)}:{number}: {line.strip()}")
    assert found == []


def test_the_steps_are_declared_only_in_the_session() -> None:
    """The step titles and order live in installer/session/steps.py alone: no front end or
    command restates a title or numbers a step, and the help text is keyed by step id."""
    from installer.session import STEP_TITLES, STEPS
    from screens.help import STEP_HELP

    # The welcome screen's "what to have ready" list names the database itself, not the step.
    allowed = {("screens/welcome.py", "Database")}
    titles = re.compile("[\"'](" + "|".join(map(re.escape, STEP_TITLES.values())) + ")[\"']")
    found = []
    for folder in ("screens", "installer/cli"):
        for source in sorted((REPO / folder).rglob("*.py")):
            where = str(source.relative_to(REPO))
            text = source.read_text()
            found += [(where, m.group(1)) for m in titles.finditer(text)
                      if (where, m.group(1)) not in allowed]
            found += [(where, m.group(0)) for m in re.finditer(r"\bStep \d+\b", text)]
    assert found == []
    assert set(STEP_HELP) == set(STEPS)  # keyed by id; the order is the steps table's


# --- the CLI runs the same validation, before any machine is opened -----------------------------


def _files(folder: Path) -> list[str]:
    """What is in `folder`, but the run's own log."""
    return sorted(p.name for p in folder.iterdir() if p.name != "carto-installer.log")


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump(data))
    answers.chmod(0o600)
    return answers


@pytest.mark.parametrize("command", ["render", "deploy"])
def test_the_cli_refuses_incomplete_answers_before_connecting(tmp_path: Path,
                                                              command: str) -> None:
    """No domain, and a target nobody answers for: refused as bad input (exit 2, the key
    named), without trying the machine and without writing anything."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    answers = _write(tmp_path, {
        "platform": "compose", "package": str(tmp_path / "package"),
        "target": {"host": "unreachable.invalid", "user": "carto",
                   "known_hosts": str(known_hosts)},
        "database": {"bundled": True}})
    before = _files(tmp_path)
    args = [command, "--answers", str(answers)] + (["--yes"] if command == "deploy" else [])
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "domain: is required for this command" in result.stderr
    assert "add domain to the answers file" in result.stderr
    assert "unreachable.invalid" not in result.stderr + result.stdout  # never tried
    assert _files(tmp_path) == before


def test_the_helm_render_refuses_a_missing_password_before_touching_the_cluster(
        tmp_path: Path) -> None:
    answers = _write(tmp_path, {
        "platform": "kubernetes", "package": str(tmp_path / "package"),
        "domain": "carto.example.com",
        "kubernetes": {"kubeconfig": str(tmp_path / "no-such-kubeconfig")},
        "database": {"host": "db.internal", "admin_password_env": "ADMIN"}})
    before = _files(tmp_path)
    result = run_cli("render", "--answers", str(answers), cwd=tmp_path, env={"ADMIN": "pw-1"})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "database.password: is required for this command" in result.stderr
    assert "pw-1" not in result.stdout + result.stderr
    assert _files(tmp_path) == before
