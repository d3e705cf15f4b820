"""Shared test setup.

Every module in tests/services/ is loaded as a pytest plugin, so a fixture module for a real
service (PostgreSQL, sshd, Docker, the Kubernetes fixture API server, ...) only has to exist to
be usable from any test.
"""

import logging
import pkgutil
from collections.abc import Iterator

import pytest

from tests import services

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
