"""The requirement checks (REQUIREMENTS.md), one module per category."""
