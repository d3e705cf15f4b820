"""Fixtures shared by the upgrade tests of this folder."""

from pathlib import Path

import docker
import pytest

from tests.support.compose_deployment import build_release_images
from tests.support.vendor_compose import NEW_VERSION, OLD_RELEASE, OLD_VERSION, vendor_release


@pytest.fixture(scope="module")
def images(docker_engine: docker.DockerClient, compose_v2: Path) -> None:
    vendor_release(OLD_RELEASE)  # skip (fail under CI=true) without ../shared/vendor
    for version in (OLD_VERSION, NEW_VERSION):
        build_release_images(docker_engine, version)
