"""What installer.vendor reads from a deployment directory, on the forms a future vendor
release may use (the real files are exercised in tests/vendor/test_compose.py)."""

from __future__ import annotations

from installer.envfile import EnvFile
from installer.vendor import (
    dotenv_values,
    image_registries,
    missing_variables,
    package_gaps,
    registry_of,
    services_publishing,
    template_needs,
)

COMPOSE = """
services:
  edge:
    image: "${EDGE_IMAGE}"
    ports:
      - "127.0.0.1:8443:8443"
      - target: 8443
        published: 443
        protocol: tcp
  plain:
    image: busybox
    ports: ["80:8080/tcp", "9000-9010:9000-9010"]
  internal:
    image: "${DOCKER_REGISTRY_BASE_PATH}/internal:${CARTO_SELFHOSTED_VERSION}"
    ports: ["443"]
  db:
    image: postgres:13.2-alpine
    scale: "${LOCAL_POSTGRES_SCALE}"
    environment:
      - PASSWORD=$POSTGRES_ADMIN_PASSWORD
      - LITERAL=$${host}
      - WITH_DEFAULT=${OPTIONAL_THING:-fallback}
"""


def test_the_router_is_whoever_publishes_443_in_any_port_syntax() -> None:
    assert services_publishing(COMPOSE, 443) == ["edge"]  # long syntax
    assert services_publishing(COMPOSE, 80) == ["plain"]  # with a protocol
    assert services_publishing(COMPOSE, 9005) == ["plain"]  # a range
    assert services_publishing(COMPOSE, 8443) == ["edge"]  # an address in front
    assert services_publishing("not: [yaml", 443) == []


def test_variables_a_template_needs_are_those_used_before_being_defined() -> None:
    template = ("BASE=registry.example/carto\nIMAGE=${BASE}/x:${CARTO_SELFHOSTED_VERSION}\n"
                "TOPIC=projects/${PROJECT}/topics/${REGION}-bus\nLATER=${DEFINED_BELOW}\n"
                "DEFINED_BELOW=1\nOPT=${MAYBE:-x}\n")
    assert template_needs(template) == ["CARTO_SELFHOSTED_VERSION", "PROJECT", "REGION",
                                        "DEFINED_BELOW"]
    missing = missing_variables(template, COMPOSE, ["PROJECT", "LOCAL_POSTGRES_SCALE"])
    # VERSION is the installer's; $$ is an escape; a default makes a variable optional.
    assert missing == ["REGION", "DEFINED_BELOW", "EDGE_IMAGE", "DOCKER_REGISTRY_BASE_PATH",
                       "POSTGRES_ADMIN_PASSWORD"]


def test_an_empty_value_counts_as_missing_and_the_legacy_password_as_present() -> None:
    customer = EnvFile.parse("PROJECT=p\nREGION=\nPOSTGRES_PASSWORD=x\n")
    template = "TOPIC=${PROJECT}/${REGION}\nPW=${POSTGRES_ADMIN_PASSWORD}\n"
    assert package_gaps(template, "", customer, []) == ["REGION"]


def test_registries_come_from_the_expanded_images_of_services_that_run() -> None:
    values = dotenv_values(
        "LOCAL_POSTGRES_SCALE=0\nEDGE_IMAGE='mirror.internal:5000/carto/edge:1'\n", "2026.7.16",
        "DOCKER_REGISTRY_BASE_PATH=us-docker.pkg.dev/carto-onprem-artifacts/gcr.io\n")
    assert image_registries(COMPOSE, values) == ["mirror.internal", "registry-1.docker.io",
                                                 "us-docker.pkg.dev"]
    values["LOCAL_POSTGRES_SCALE"] = "1"
    assert "registry-1.docker.io" in image_registries(COMPOSE, values)
    assert registry_of("localhost:5000/x") == "localhost"
    assert registry_of("carto/router:1") == "registry-1.docker.io"
    assert registry_of("") is None
