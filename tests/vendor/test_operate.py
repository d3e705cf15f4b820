"""The operate commands read the vendor's real deployment directory: service names for logs,
the bundled database's service and image, secret keys of its env.tpl masked in a bundle."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from installer.answers import parse_answers
from installer.operate.bundle import mask_env_file
from installer.operate.database import describe_database
from installer.operate.installation import Installation
from installer.operate.logs import service_names
from installer.redact import Redactor
from installer.target import LocalTarget
from tests.support.vendor_files import VENDOR, vendor_missing


@pytest.fixture
def vendor_directory(tmp_path: Path) -> Path:
    source = VENDOR / "compose-2026.7.16"
    if not source.is_dir():
        vendor_missing(f"the vendor's files are not here ({source})")
    return Path(shutil.copytree(source, tmp_path / "carto"))


def test_names_come_from_the_vendors_compose_file(vendor_directory: Path) -> None:
    (vendor_directory / ".env").write_text(
        "LOCAL_POSTGRES_SCALE=1\nWORKSPACE_POSTGRES_HOST=workspace-postgres\n"
        "WORKSPACE_POSTGRES_DB=workspace\nPOSTGRES_ADMIN_USER=postgres\n")
    answers = parse_answers({"version": 1, "compose": {"directory": str(vendor_directory)},
                             "database": {"bundled": True}})
    inst = Installation(answers, LocalTarget(), Redactor())
    names = service_names(inst)
    assert {"router-http", "workspace-api", "workspace-migrations", "workspace-postgres",
            "valkey"} <= set(names)
    assert describe_database(inst) == \
        "'workspace' in the bundled PostgreSQL container (service workspace-postgres)"
    assert inst.service_image("workspace-postgres") == "postgres:13.2-alpine"


def test_every_secret_key_of_the_vendors_env_template_is_masked(vendor_directory: Path) -> None:
    template = (vendor_directory / "env.tpl").read_text()
    filled = "\n".join(f"{line.split('=', 1)[0]}=planted-value-{n}" if "=" in line and
                       not line.startswith("#") else line
                       for n, line in enumerate(template.splitlines()))
    masked = mask_env_file(filled)
    kept = {line.split("=", 1)[0] for line in masked.splitlines() if "=" in line}
    assert kept == {line.split("=", 1)[0] for line in filled.splitlines() if "=" in line}
    for line in masked.splitlines():
        if line.lstrip().startswith("#"):
            continue
        key = line.split("=", 1)[0]
        if any(word in key for word in ("PASSWORD", "SECRET", "TOKEN", "PRIVATE")):
            assert line.endswith("=********"), line
    # what support needs stays readable
    assert any(line.startswith("AUTH0_DOMAIN=planted-value") for line in masked.splitlines())
