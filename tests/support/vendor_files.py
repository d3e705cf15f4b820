"""Where the vendor's real files are (../shared/vendor, beside the project), and what a test
does when they are not: skip in a clone of the project alone, fail under CI=true."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

VENDOR = Path(__file__).resolve().parents[2].parent / "shared" / "vendor"


def vendor_missing(what: str, *, module: bool = False) -> None:
    """Skip (the whole module with `module`) because `what` is absent; a failure under
    CI=true, where the vendor's files must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what}: under CI=true the vendor's files must be there", pytrace=False)
    pytest.skip(what, allow_module_level=module)
