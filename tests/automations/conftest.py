"""The automation fixtures (``tests/automation_fixtures.py``): an app with an in-process worker, ``automations``,
``gate``."""

from tests.automation_fixtures import app, automations, gate, settings

__all__ = ["app", "automations", "gate", "settings"]
