"""What the command line promises scripts (CONTRACT.md): its exit codes and its log file.

0 success, 3 a check or the deployment failed, 4 warnings with --strict, 2 invalid input
(nothing written), 1 our own bug (with the log path), 130 interrupted.
"""

from __future__ import annotations

EXIT_OK, EXIT_BUG, EXIT_INPUT, EXIT_FAILED, EXIT_STRICT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
LOG_NAME = "carto-installer.log"
