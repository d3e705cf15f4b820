"""Shared test setup.

Every module in tests/services/ is loaded as a pytest plugin, so a fixture module for a real
service (PostgreSQL, sshd, Docker, the Kubernetes fixture API server, ...) only has to exist to
be usable from any test.
"""

import pkgutil

from tests import services

pytest_plugins = sorted(
    f"tests.services.{module.name}" for module in pkgutil.iter_modules(services.__path__)
)
