"""The automation fixtures (``tests/automation_fixtures.py``): parent runs here are automation runs."""

from tests.automation_fixtures import app, automations, gate, settings

__all__ = ["app", "automations", "gate", "settings"]
