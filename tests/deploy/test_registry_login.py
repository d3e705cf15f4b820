"""`docker login` on the target for a registry that needs one, with the real docker CLI and
engine: the password goes on standard input only, and a refusal names the registry."""

from __future__ import annotations

import base64
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from installer.answers import parse_answers
from installer.errors import DeployError
from installer.registry import docker_login
from installer.target import LocalTarget

PASSWORD = "registry-Passw0rd-secret"


class _Registry(http.server.BaseHTTPRequestHandler):
    """The Docker Registry HTTP API v2 base endpoint, `GET /v2/`, with basic auth: all that
    `docker login` asks of a registry."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
        expected = "Basic " + base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
        if self.path.rstrip("/") == "/v2" and self.headers.get("Authorization") == expected:
            self.send_response(200)
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="test-registry"')
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def answers_for(registry: str, password: str):  # type: ignore[no-untyped-def]
    return parse_answers({"compose": {"registry": registry, "registry_username": "ops",
                                      "registry_password_env": "REG"}}, env={"REG": password})


def test_login_with_the_password_on_stdin(docker_engine: object, registry: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    caplog.set_level(logging.DEBUG)
    done = docker_login(answers_for(registry, PASSWORD), LocalTarget(), sudo=False)
    assert done and registry in done and "config.json" in done
    stored = json.loads((tmp_path / "docker" / "config.json").read_text())
    assert registry in stored["auths"]
    assert PASSWORD not in caplog.text  # never on a command line, never logged


def test_a_refused_login_names_the_registry_and_the_answer(
        docker_engine: object, registry: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    with pytest.raises(DeployError) as caught:
        docker_login(answers_for(registry, "wrong-password"), LocalTarget(), sudo=False)
    assert registry in str(caught.value) and "compose.registry_username" in \
        caught.value.remediation
    assert not (tmp_path / "docker" / "config.json").exists() or registry not in \
        json.loads((tmp_path / "docker" / "config.json").read_text()).get("auths", {})


def test_no_login_answers_means_no_login() -> None:
    assert docker_login(parse_answers({}), LocalTarget(), sudo=False) is None
