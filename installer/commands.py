"""Commands beyond preflight: name -> (help, add_arguments(parser), run(args, redactor) -> code).

Each command's module is imported only when the command runs, so `--version` and `--help`
stay fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

COMMANDS: dict[str, tuple[str, Callable[[Any], None], Callable[[Any, Any], int]]] = {}
