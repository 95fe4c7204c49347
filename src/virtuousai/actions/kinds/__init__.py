"""Built-in action kinds. Importing this package registers them."""

from virtuousai.actions.kinds import basic, http, research

__all__ = ["basic", "http", "research"]
