"""schemathesis over /openapi.json: generated requests to every operation, as the owner of a fresh organization.

No answer may be a 5xx, and every answer must be documented: its status code, its content type and its body's
schema. Routes added later are exercised too. SQLite only, and bounded (few examples, derandomized) to stay fast.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Templates
from virtuousai.app import create_app
from virtuousai.config import Settings
from virtuousai.orgs.service import create_organization
from virtuousai.store.engine import make_engine, make_sessionmaker

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass(frozen=True)
class Target:
    app: FastAPI
    headers: dict[str, str]


async def _owner_key(settings: Settings) -> str:
    engine = make_engine(settings.resolved_database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            created = await create_organization(session, "Schemathesis", "fuzz@example.com")
    finally:
        await engine.dispose()
    return created.key.plaintext


@pytest.fixture
def conformance_target(db_templates: Templates, tmp_path: Path) -> Iterator[Target]:
    # schemathesis runs the app (and its lifespan) on its own event loop thread, so this fixture is synchronous
    # and builds its own migrated SQLite file rather than using the async `app` fixture.
    db_file = tmp_path / "vai.db"
    shutil.copyfile(db_templates.sqlite_file, db_file)
    app_settings = Settings(database_url=f"sqlite+aiosqlite:///{db_file}", data_dir=tmp_path / "var")
    key = asyncio.run(_owner_key(app_settings))
    yield Target(app=create_app(app_settings), headers={"Authorization": f"Bearer {key}"})
    shutdown_lifespans()


# Per operation and generation mode; derandomized so a run is repeatable, small so the whole API stays fast.
EXAMPLES = settings(
    max_examples=8,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def exercise(operation: APIOperation, mode: GenerationMode, target: Target) -> None:
    @EXAMPLES
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=target.headers, checks=CHECKS)

    run()


def test_every_answer_is_documented_and_none_is_a_server_error(conformance_target: Target) -> None:
    # The pytest integration (`schema.parametrize`, `from_fixture`) does not run on pytest 9 yet, so each
    # operation's strategy is driven with Hypothesis directly; every failure is collected, not just the first.
    schema = schemathesis.openapi.from_asgi("/openapi.json", conformance_target.app)
    failures: list[str] = []
    exercised: list[str] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"invalid schema: {result.err()}")
            continue
        operation = result.ok()
        # Invalid input is worth generating where there is structured input to break (a body, query parameters);
        # for free-form string path parameters Hypothesis only burns time proving that it cannot.
        negatable = len(operation.body) > 0 or len(operation.query) > 0
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if negatable else (GenerationMode.POSITIVE,)
        for mode in modes:
            try:
                exercise(operation, mode, conformance_target)
            except Unsatisfiable:
                # Nothing in this operation can be made invalid (no parameters, or only free-form strings).
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (Exception, FailureGroup) as exc:  # FailureGroup is a BaseExceptionGroup, not an Exception
                failures.append(f"{operation.label} ({mode.value}):\n{exc}")
        exercised.append(operation.label)
    assert "GET /api/v1/me" in exercised
    assert "POST /api/v1/api-keys" in exercised
    assert not failures, "\n\n".join(failures)
