"""No test module imports another test module: what tests share lives in helper modules (``tests/helpers.py``,
``tests/servers.py``, a package's ``conftest.py`` or helpers), so running, moving or deleting one test file never
changes what another collects or runs. Every import counts, also one inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _is_test_module(module: str) -> bool:
    return module.split(".")[-1].startswith("test_")


def imported_test_modules(source: str) -> list[str]:
    """The test modules (``test_*``) that ``source`` imports, as written."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if node.module and _is_test_module(node.module):
                found.append(module)
            # ``from tests.foundation import test_x``
            found += [f"{module}.{alias.name}" for alias in node.names if _is_test_module(alias.name)]
    return found


def test_the_check_sees_every_form_of_import() -> None:
    source = (
        "import tests.foundation.test_a\n"
        "from tests.actions.test_b import helper\n"
        "from tests.cli import test_c\n"
        "from .test_d import x\n"
        "def f():\n    from tests.data.test_e import y\n"
        "from tests.helpers import eventually\n"
        "from tests.runtime.conftest import Harness\n"
    )
    assert imported_test_modules(source) == [
        "tests.foundation.test_a",
        "tests.actions.test_b",
        "tests.cli.test_c",
        ".test_d",
        "tests.data.test_e",
    ]


def test_no_test_module_imports_another() -> None:
    offenders = {
        str(path.relative_to(TESTS.parent)): imported
        for path in sorted(TESTS.rglob("*.py"))
        if (imported := imported_test_modules(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "move what they share into a helper module (tests/helpers.py, tests/servers.py)"
