"""Shared test setup.

Every module in tests/services/ is loaded as a pytest plugin, so a fixture module for a real
service (PostgreSQL, sshd, Docker, the Kubernetes fixture API server, ...) only has to exist to
be usable from any test.
"""

import pkgutil

import pytest

from tests import services

pytest_plugins = sorted(
    f"tests.services.{module.name}" for module in pkgutil.iter_modules(services.__path__)
)


@pytest.fixture(autouse=True)
def _private_state_directory(tmp_path_factory: pytest.TempPathFactory,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The wizard keeps its session in $XDG_STATE_HOME: each test gets its own, so no test
    reads or writes the real user's state (subprocesses inherit it through the environment)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
