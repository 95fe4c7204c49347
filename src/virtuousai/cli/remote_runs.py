"""``vai run KIND`` and ``vai runs …``: action runs on a server (``cli/remote.py``), in the key's organization.

``--follow`` reads the run's server-sent events (``GET /action-runs/{id}/events``), resuming with
``Last-Event-ID`` if the connection drops, and says when no worker has claimed the run (``cli/follow.py``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import typer

from virtuousai.cli import remote
from virtuousai.cli.follow import unclaimed_notice
from virtuousai.cli.output import (
    EXIT_FAILED,
    JsonListOption,
    JsonObjectOption,
    Words,
    echo_json,
    parse_pairs,
    print_table,
)
from virtuousai.cli.remote import Server, Unreachable, connect, segment
from virtuousai.config import Settings

runs_app = typer.Typer(
    help="Action runs on the server (VAI_URL): list, show, cancel, approve, reject.",
    no_args_is_help=True,
    add_completion=False,
)

# Where the API's error paths point, in these commands' words.
RUN_WORDS: Words = {("body", "inputs"): "--input", ("body", "kind"): "KIND", ("body", "inputs_hash"): "--inputs-hash"}
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
# Statuses that mean no worker is needed yet (a worker did claim it, or it waits for a person first).
NOT_WAITING_FOR_A_WORKER = frozenset({"RUNNING", "AWAITING_APPROVAL", *TERMINAL})
RunArgument = Annotated[str, typer.Argument(help="The run's id (run_…).")]


def run(
    kind: Annotated[str, typer.Argument(help="An action kind (GET /api/v1/actions lists them), e.g. echo.")],
    input_: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="k=v (JSON values keep their type); repeat for more.")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="The same key and inputs return the same run.")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Print its events until it ends.")] = False,
    timeout_s: Annotated[float, typer.Option("--timeout", help="With --follow: stop watching after this long.")] = 3600,
    as_json: JsonObjectOption = False,
) -> None:
    """Start an action run on the server (VAI_URL); --follow to watch it (exit 1 unless it COMPLETED)."""
    inputs = parse_pairs(input_, "--input")
    body: dict[str, Any] = {"kind": kind, "inputs": inputs}
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key

    async def main() -> dict[str, Any]:
        settings = Settings()
        async with connect(settings) as server:
            created: dict[str, Any] = await server.request("POST", "/action-runs", json_body=body)
            if not follow:
                return created
            typer.echo(f"started {created['id']} ({created['status']})", err=as_json)
            async with (
                asyncio.timeout(timeout_s),
                unclaimed_notice(created["id"], settings.follow_notice_s, remote=True) as claimed,
            ):
                if created["status"] in NOT_WAITING_FOR_A_WORKER:
                    claimed.set()
                async for event in events(server, created["id"]):
                    typer.echo(describe(created["id"], event), err=as_json)
                    if event.get("kind") == "status" and event["data"].get("to") in NOT_WAITING_FOR_A_WORKER:
                        claimed.set()
            finished: dict[str, Any] = await server.request("GET", f"/action-runs/{segment(created['id'])}")
            return finished

    try:
        result = remote.run(main(), words=RUN_WORDS)
    except TimeoutError:
        typer.echo(f"error: stopped watching after {timeout_s:g} s; the run goes on (vai runs show)", err=True)
        raise typer.Exit(code=EXIT_FAILED) from None
    if as_json:
        echo_json(result)
    elif not follow:
        typer.echo(f"started {result['id']} ({result['status']})")
    else:
        print_outcome(result)
    if follow and result["status"] != "COMPLETED":
        raise typer.Exit(code=EXIT_FAILED)


async def events(server: Server, run_id: str) -> AsyncIterator[dict[str, Any]]:
    """The run's events in order until the stream ends (after the terminal event); a dropped connection is
    resumed after the last event seen."""
    last_seen: str | None = None
    while True:
        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_seen} if last_seen else {})}
        try:
            async with server.stream(f"/action-runs/{segment(run_id)}/events", headers) as response:
                data: list[str] = []
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif line.startswith("id:"):
                        last_seen = line[3:].strip()
                    elif not line and data:
                        yield json.loads("\n".join(data))
                        data = []
            return  # the server ends the stream after the terminal event
        except Unreachable:
            if last_seen is None:
                raise
            await asyncio.sleep(1.0)  # the server restarted or a proxy cut the stream: reconnect, resume


def describe(run_id: str, event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    if event.get("kind") == "status":
        line = f"{run_id} {data.get('to')}"
        if data.get("to") == "AWAITING_APPROVAL":
            line += f" (an admin decides: vai runs approve {run_id})"
        if data.get("error"):
            line += f": {data['error']}"
        return line
    return f"{run_id} {event.get('kind')} {json.dumps(data)}"


def print_outcome(run: dict[str, Any]) -> None:
    if run.get("output") is not None:
        typer.echo(json.dumps(run["output"], indent=2))
    if run.get("error"):
        typer.echo(f"error: {run['error'].get('type')}: {run['error'].get('message')}", err=True)


@runs_app.command("list")
def runs_list(
    status: Annotated[str | None, typer.Option("--status", help="Only runs in this status.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only runs of this kind.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 20,
    as_json: JsonListOption = False,
) -> None:
    """Recent action runs, newest first."""

    async def main() -> list[dict[str, Any]]:
        async with connect() as server:
            page = await server.request("GET", "/action-runs", params={"status": status, "kind": kind, "limit": limit})
        items: list[dict[str, Any]] = page["items"]
        return items

    rows = remote.run(main(), words={("query", "status"): "--status", ("query", "kind"): "--kind"})
    if as_json:
        echo_json(rows)
        return
    columns = ("id", "kind", "status", "origin", "attempt", "created_at")
    print_table(("id", "kind", "status", "origin", "attempt", "created"), [[r[c] for c in columns] for r in rows])


@runs_app.command("show")
def runs_show(run_id: RunArgument, as_json: JsonObjectOption = False) -> None:
    """One run: status, inputs (and the hash an approval names), output or error."""

    async def main() -> dict[str, Any]:
        async with connect() as server:
            found: dict[str, Any] = await server.request("GET", f"/action-runs/{segment(run_id)}")
            return found

    found = remote.run(main())
    if as_json:
        echo_json(found)
        return
    for name in ("id", "kind", "status", "origin", "attempt", "max_attempts", "created_at", "finished_at"):
        typer.echo(f"{name + ':':14}{found.get(name) if found.get(name) is not None else ''}")
    typer.echo(f"{'inputs_hash:':14}{found['inputs_hash']}")
    typer.echo(f"inputs:\n{json.dumps(found['inputs'], indent=2)}")
    print_outcome(found)


@runs_app.command("cancel")
def runs_cancel(run_id: RunArgument, as_json: JsonObjectOption = False) -> None:
    """Cancel: a run not started yet ends at once; a running one is asked to stop."""

    async def main() -> dict[str, Any]:
        async with connect() as server:
            answered: dict[str, Any] = await server.request("POST", f"/action-runs/{segment(run_id)}/cancel")
            return answered

    answered = remote.run(main())
    if as_json:
        echo_json(answered)
    elif answered["status"] == "CANCELLED":
        typer.echo(f"{run_id} CANCELLED")
    else:
        typer.echo(f"{run_id} {answered['status']}: asked to stop")


InputsHashOption = Annotated[
    str | None,
    typer.Option("--inputs-hash", help="The hash of the inputs you reviewed (vai runs show); else they are shown."),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Decide on the inputs shown without asking.")]


def _decide(decision: str, run_id: str, inputs_hash: str | None, yes: bool, body: dict[str, Any]) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with connect() as server:
            bound = inputs_hash
            if bound is None:
                found = await server.request("GET", f"/action-runs/{segment(run_id)}")
                typer.echo(f"{run_id} {found['kind']} ({found['status']}) inputs:", err=True)
                typer.echo(json.dumps(found["inputs"], indent=2), err=True)
                if not yes and not typer.confirm(f"{decision} these inputs?", err=True):
                    raise typer.Exit(code=EXIT_FAILED)
                bound = found["inputs_hash"]
            answered: dict[str, Any] = await server.request(
                "POST", f"/action-runs/{segment(run_id)}/{decision}", json_body={"inputs_hash": bound, **body}
            )
            return answered

    return remote.run(main(), words=RUN_WORDS)


@runs_app.command("approve")
def runs_approve(
    run_id: RunArgument, inputs_hash: InputsHashOption = None, yes: YesOption = False, as_json: JsonObjectOption = False
) -> None:
    """Approve a run waiting for approval, bound to the exact inputs you reviewed (admins)."""
    answered = _decide("approve", run_id, inputs_hash, yes, {})
    echo_json(answered) if as_json else typer.echo(f"{run_id} {answered['status']}")


@runs_app.command("reject")
def runs_reject(
    run_id: RunArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the run).")] = "",
    inputs_hash: InputsHashOption = None,
    yes: YesOption = False,
    as_json: JsonObjectOption = False,
) -> None:
    """Reject a run waiting for approval: it ends CANCELLED (admins)."""
    answered = _decide("reject", run_id, inputs_hash, yes, {"reason": reason} if reason else {})
    echo_json(answered) if as_json else typer.echo(f"{run_id} {answered['status']}")
