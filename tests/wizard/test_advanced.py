"""The Advanced settings of the Network step: collapsed by default, one line; opened, each
field with its help; what Next refuses and what it stores (same rules as an answers file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import Collapsible, Input

from installer.answers import Secret
from installer.redact import Redactor
from installer.session import Session
from screens.app import WizardApp
from screens.widgets.field_input import FieldInput
from tests.support.wizard import sync

WORKDIR = Path("/srv/carto-installer")


def state(platform: str = "compose") -> Session:
    s = Session(redactor=Redactor(), workdir=WORKDIR)
    a = s.answers
    a.platform = platform
    a.domain = "carto.example.com"
    a.database.host = "db.example.internal"
    a.database.admin_password = Secret("correct horse battery", "inline")
    a.database.password = Secret("staple-staple-staple", "inline")
    return s


async def open_advanced(pilot: Any) -> None:
    await pilot.pause()
    for each in pilot.app.screen.query(Input):
        each.cursor_blink = False
    section = pilot.app.screen.query_one("#advanced", Collapsible)
    section.collapsed = False
    await pilot.pause()
    pilot.app.screen.query_one("#adv-own-buckets").value = True
    # The bucket fields appear over a few refreshes; scroll once the layout has settled, or
    # the scroll position (and the scrollbar in the picture) depends on timing.
    await settled(pilot)
    section.scroll_visible(animate=False, top=True)
    await pilot.wait_for_scheduled_animations()
    await settled(pilot)


async def settled(pilot: Any) -> None:
    """Until every scrollable's size and offset stay the same over two looks (a loaded
    machine lays out over more refreshes than an idle one)."""
    def layout() -> list[Any]:
        return [(w.scroll_x, w.scroll_y, w.virtual_size, w.size)
                for w in pilot.app.screen.query("*") if w.is_scrollable]

    previous = None
    for _ in range(100):
        await pilot.pause(0.05)
        now = layout()
        if now == previous:
            return
        previous = now
    raise AssertionError("the layout never settled")


def test_advanced_settings_opened(snap_compare: Any) -> None:
    app = WizardApp(state(), start="network", live=False)
    assert snap_compare(app, run_before=open_advanced)


def field(app: WizardApp, path: str) -> FieldInput:
    return app.screen.query_one("#f-" + path.replace(".", "-"), FieldInput)


@sync
async def test_collapsed_by_default_and_nothing_stored_when_untouched() -> None:
    s = state()
    app = WizardApp(s, start="network", live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.screen.query_one("#advanced", Collapsible).collapsed
        app.screen.commit()
    assert s.answers.storage is None and s.answers.google_maps_api_key is None


@sync
async def test_own_buckets_are_judged_like_an_answers_file_then_stored() -> None:
    s = state()
    app = WizardApp(s, start="network", live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_advanced(pilot)
        screen = app.screen
        # s3 is the default choice; both buckets but no keys: refused, naming the answer.
        field(app, "storage.buckets.imports").text = "acme-client"
        field(app, "storage.buckets.thumbnails").text = "acme-thumbs"
        field(app, "storage.region").text = "eu-west-1"
        await pilot.pause()
        problem = screen.validate()
        assert problem is not None and "AWS access key id" in problem[1]
        assert problem[0] is field(app, "storage.access_key_id")  # focused with the reason
        field(app, "storage.access_key_id").text = "AKIAEXAMPLE"
        field(app, "storage.secret_access_key").text = "s3-secret-value"
        field(app, "google_maps_api_key").text = "maps-key-value"
        await pilot.pause()
        assert screen.validate() is None
        screen.commit()
    storage = s.answers.storage
    assert storage is not None and storage.provider == "s3"
    assert (storage.buckets.imports, storage.buckets.thumbnails) == ("acme-client",
                                                                     "acme-thumbs")
    assert storage.secret_access_key is not None
    assert storage.secret_access_key.value == "s3-secret-value"
    assert storage.thumbnails_public is True
    assert s.answers.google_maps_api_key is not None


@sync
async def test_kubernetes_node_port_sets_the_service_type() -> None:
    s = state("kubernetes")
    app = WizardApp(s, start="network", live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_advanced(pilot)
        app.screen.query_one("#adv-own-buckets").value = False
        field(app, "kubernetes.node_port").text = "8443"
        await pilot.pause()
        problem = app.screen.validate()
        assert problem is not None and "30000" in problem[1]
        field(app, "kubernetes.node_port").text = "30443"
        await pilot.pause()
        assert app.screen.validate() is None
        app.screen.commit()
    assert s.answers.kubernetes.service_type == "NodePort"
    assert s.answers.kubernetes.node_port == 30443


def test_plain_prompts_ask_the_advanced_settings_behind_one_gate(
        tmp_path: Path, monkeypatch: Any) -> None:
    import io

    from screens.plain import PlainWizard
    from tests.support.scripted_prompts import Always, ScriptedPrompts

    key = tmp_path / "gcs.json"
    key.write_text('{"type": "service_account", "project_id": "acme", "client_email": '
                   '"a@acme.iam.gserviceaccount.com", "private_key": "x"}')
    prompts = ScriptedPrompts({
        "Advanced settings?": [True],
        "Use your own buckets": Always(True),
        "Storage provider:": Always("Google Cloud Storage"),
        "Client (imports) bucket:": Always("acme-client"),
        "Thumbnails bucket:": Always("acme-thumbs"),
        "Import bucket:": Always(""),
        # Refused at once by the field's own check (it is required), then given.
        "Service-account key file:": ["", str(key), str(key)],
        "Google Cloud project:": Always(""),
        "Are thumbnails public": Always(False),
        "Private CA to trust:": Always(""),
        "Google Maps API key": ["maps-key", ""],  # the second time: Enter keeps it
        "Registry needing a login:": Always(""),
        # The first round names a registry user without a password: refused as an answers
        # file would be (the whole section is judged), and asked again.
        "Registry user:": ["ops", ""],
        "Registry password:": ["", ""],
    }).install(monkeypatch)
    s = state()
    out = io.StringIO()
    wizard = PlainWizard(s, out=out)
    wizard.advanced()
    storage = s.answers.storage
    assert storage is not None and storage.provider == "gcp"
    assert storage.key_file == str(key) and storage.thumbnails_public is False
    assert s.answers.google_maps_api_key is not None  # kept from the first round
    assert s.answers.compose.registry_username is None
    assert "compose.registry_password_env" in out.getvalue()
    assert any(m.startswith("Service-account key file") for m, _, _ in prompts.rejected)
    assert prompts.unanswered() == []
    # Gate closed: nothing else is asked (the script would refuse an unknown prompt).
    prompts.script["Advanced settings?"] = [False]
    wizard.advanced()
    assert s.answers.storage is storage


def test_a_resumed_session_goes_back_to_network_for_the_bucket_keys(
        tmp_path: Path, monkeypatch: Any) -> None:
    """Typed secrets are never saved; a resumed session asks for them again at Network."""
    from installer.answers import StorageBuckets, StorageSettings
    from tests.support.wizard import new_state

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    s = new_state(tmp_path)
    a = s.answers
    a.domain = "carto.example.com"
    a.package = str(tmp_path / "package")
    a.database.bundled = True
    a.storage = StorageSettings(
        provider="s3", region="eu-west-1",
        buckets=StorageBuckets(imports="acme-client", thumbnails="acme-thumbs"),
        access_key_id=Secret("AKIAEXAMPLE", "inline"),
        secret_access_key=Secret("s3-secret-value", "inline"))
    s.save_session("review")
    text = s.session_path.read_text()
    assert "s3-secret-value" not in text and "acme-thumbs" in text
    again = new_state(tmp_path)
    saved = again.saved_session()
    assert saved is not None
    assert again.resume(saved) == "network"
    assert again.missing("network") == ["storage.access_key_id", "storage.secret_access_key"]


@sync
async def test_a_ca_file_holding_a_private_key_is_refused_at_next(tmp_path: Path) -> None:
    bad = tmp_path / "bundle.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
                   "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    app = WizardApp(state(), start="network", live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_advanced(pilot)
        app.screen.query_one("#adv-own-buckets").value = False
        field(app, "network.trusted_ca_file").text = str(bad)
        await pilot.pause()
        problem = app.screen.validate()
        assert problem is not None and "private key" in problem[1]
        assert problem[0] is field(app, "network.trusted_ca_file")
