"""Fixtures of the operate tests alone."""

import docker
import pytest

from tests.support.pg_image import PG_IMAGE, build_postgres_image


@pytest.fixture(scope="session")
def postgres_image(docker_engine: docker.DockerClient) -> str:
    """Tag of the PostgreSQL 15 image (built once, reused while its content is unchanged)."""
    build_postgres_image(docker_engine)
    return PG_IMAGE
