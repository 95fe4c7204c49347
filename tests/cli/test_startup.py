"""``vai`` starts without importing what it does not run: the command table in ``cli/main.py`` is all that
``vai --help`` loads, and each entry loads only its own module when it runs.

Assertions on modules, not on time (the measured start times are in the CHANGELOG)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from virtuousai.cli.main import COMMANDS, load

HEAVY = ("fastapi", "starlette", "uvicorn", "duckdb", "dlt", "pyarrow", "pydantic_ai", "openai", "anthropic", "httpx")


def imported_after(code: str) -> set[str]:
    """The top-level packages a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_importing_the_cli_imports_no_server_data_or_model_library() -> None:
    loaded = imported_after("import virtuousai.cli.main")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert not loaded & {"sqlalchemy", "pydantic"}, "even the database layer waits for a command that needs it"


def test_help_lists_every_command_without_loading_one() -> None:
    loaded = imported_after(
        "import sys\nfrom virtuousai.cli.main import app\nsys.argv = ['vai', '--help']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass"
    )
    assert not loaded & {*HEAVY, "sqlalchemy"}


def test_an_administration_command_loads_the_database_layer_only() -> None:
    loaded = imported_after("from virtuousai.cli.main import load\nload('org')\nload('key')")
    assert "sqlalchemy" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_entry_loads_the_command_its_help_describes(name: str) -> None:
    command = load(name)
    assert command.name == name
    documented = " ".join((command.help or "").split())
    assert documented.startswith(COMMANDS[name].help.rstrip(".")), (documented, COMMANDS[name].help)


def test_a_worker_or_server_process_imports_no_model_sdk_until_a_chain_needs_one() -> None:
    """The SDKs are ~2.2 s of a worker's ~5 s start here (llm/providers.py imports them when a chain is built)."""
    loaded = imported_after("import virtuousai.process\nimport virtuousai.app")
    assert not loaded & {"openai", "anthropic"}, sorted(loaded & {"openai", "anthropic"})
    built = imported_after(
        "import asyncio\n"
        "from contextlib import AsyncExitStack\n"
        "from virtuousai.llm.providers import LLMConnection, build_model\n"
        "c = LLMConnection('c', None, 'openai', 1, None, 'k', None, None, 0, {})\n"
        "async def main():\n"
        "    build_model(c, 'gpt-4o', timeout_s=5, resources=AsyncExitStack())\n"
        "asyncio.run(main())"
    )
    assert "openai" in built
