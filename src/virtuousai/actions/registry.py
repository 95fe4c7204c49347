"""The catalog of action kinds: the modules that declare them, and the registry a process runs with.

What a kind *is* (slug, typed input and output models, risk, defaults, ``execute``) and how one is declared
(``@action_kind``) is the runtime's contract, in ``virtuousai/runtime/kinds.py``. This module only knows where the
built-in kinds live and loads them (plus the ``VAI_KIND_MODULES`` plugins).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from functools import cache

from virtuousai.runtime.kinds import DECLARED, KindRegistry

# Every module that declares kinds. Importing it registers them in ``DECLARED``.
KIND_MODULES: tuple[str, ...] = (
    "virtuousai.actions.kinds",
    "virtuousai.data.kinds",
    "virtuousai.data.query_tools",
    "virtuousai.agents.kinds",
    "virtuousai.flashboards.kinds",
)


@cache
def default_registry() -> KindRegistry:
    for module in KIND_MODULES:
        importlib.import_module(module)
    return DECLARED


def load_registry(extra_modules: Iterable[str] = ()) -> KindRegistry:
    """The default registry plus the kinds declared in ``extra_modules`` (the ``kind_modules`` setting: plugins,
    and tests that register kinds inside worker subprocesses)."""
    registry = default_registry()
    for module in extra_modules:
        importlib.import_module(module)
    return registry
