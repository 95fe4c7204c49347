"""Built-in action kinds. Importing this package registers them."""

from virtuousai.actions.kinds import basic

__all__ = ["basic"]
