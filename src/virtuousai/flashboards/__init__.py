"""Flashboards: persistent dashboards of guarded lake queries and their charts (docs/flashboards.md)."""
