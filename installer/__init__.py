"""carto-installer: the headless core.

Nothing in this package imports a user interface (textual, questionary or screens); the front
ends import the core, never the other way round. tests/project/test_import_hygiene.py enforces it.
"""

__version__ = "0.1.0"
