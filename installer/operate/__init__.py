"""Operating an installed deployment: backup, restore, support bundle, logs, uninstall.

The shared view of the installation is installation.py; each command has its module, and
installer/cli/operate.py prints them for people. Imports stay lazy so `--help` remains fast.
"""
