"""The command line: one package above the core's other layers (an import contract in
pyproject.toml keeps it on top).

contract     exit codes and the log file's name
entry        main(): logging, signals, exit codes; with no command, the wizard it is given
parser       build_parser() and the COMMANDS table
preflight    the `preflight` command
deployment   `render`, `deploy`, `status`, `upgrade`
operate      `backup`, `restore`, `support-bundle`, `logs`, `uninstall`
answers_arg  the --answers file and the target it points at
prompts      terminal prompts the commands share (passphrases, yes/no)
"""

from installer.cli.entry import main
from installer.cli.parser import build_parser

__all__ = ["build_parser", "main"]
