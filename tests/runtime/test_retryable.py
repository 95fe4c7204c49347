"""An error that says another attempt cannot help (``retryable = False``, like the outbound client's refused
destinations, or a domain error that says the request is wrong: a connection that is not there) fails the run at
once, although attempts remain; other errors are retried."""

from __future__ import annotations

from tests.runtime import kinds_effects
from tests.runtime.conftest import Harness
from virtuousai.net.errors import BlockedDestination
from virtuousai.runtime.states import RunStatus


async def test_an_error_marked_not_retryable_fails_the_run_without_another_attempt(harness: Harness) -> None:
    assert harness.registry.get("test_blocked_destination") is kinds_effects.blocked_destination
    assert BlockedDestination.retryable is False
    run_id = await harness.create("test_blocked_destination", {}, max_attempts=3)
    harness.start_worker()
    run = await harness.wait_for(run_id, {RunStatus.FAILED})
    assert run.attempt == 1
    assert run.error is not None and run.error["type"] == "BlockedDestination"
    assert [e.data.get("reason") for e in await harness.events(run_id) if e.data.get("reason")] == []


async def test_a_not_found_error_is_not_retried_as_if_it_were_transient(harness: Harness) -> None:
    run_id = await harness.create("test_not_found", {}, max_attempts=3)
    harness.start_worker()
    run = await harness.wait_for(run_id, {RunStatus.FAILED})
    assert run.attempt == 1
    assert run.error == {"type": "NotFound", "message": "connection 'slug:gone' not found"}


async def test_an_ordinary_error_is_still_retried(harness: Harness) -> None:
    run_id = await harness.create("fail", {"succeed_on_attempt": 2}, max_attempts=3)
    harness.start_worker()
    run = await harness.wait_for(run_id, {RunStatus.COMPLETED})
    assert run.attempt == 2
