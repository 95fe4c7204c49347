"""Agent runs as parent runs of the orchestrator (``orchestration/orchestrator.py``): ``load`` a run's state,
``plan`` (``loop.py``, pure), ``apply`` the plan — the same mechanism automation runs move by.

``load`` reads the run row with its organization's settings, its steps, the children of its open steps (their
ActionRuns, or the delegated runs), and what a model call needs: the pinned spec version (parsed once per process:
versions never change), the tools it offers (the spec's tools whose action kinds this process has, their JSON
schemas from the kinds' input models, and whether the organization's policy gates them), the sub-agents it may
call, the organization's model selection and LLM connections.

``apply`` writes, in the orchestrator's transaction and in one statement on PostgreSQL (``write_together``):

1. the run row, guarded by the event counter ``load`` read (``last_event_seq``, the run's version: every pass that
   changes something advances it) — a pass that lost the race is ``Stale`` and reads again;
2. the new steps and the steps that moved, and the events (numbered from that counter);
3. the new ActionRuns (built by the one builder, ``runtime/creation.py``; a tool call's is keyed by its
   ``tool_call_id`` within the run, so no call is ever made twice), and the delegated runs;
4. the cancel requests of delegated runs of a run that ends.

After the commit the orchestrator asks the ActionRuns of the steps that ended early to stop and advances what the
pass names: new and cancelled delegated runs, and the caller of a delegated run whose state changed (its caller
reads it). A run that ends publishes a ``finished`` wake-up naming its caller, which advances it like any child.

A pass keeps the state it leaves (``after``): the next pass here reads the run row and the open steps' children,
and takes the steps from it while the run is at the version it was kept at. A run whose one open step is a model
or tool call (``sole_child``) moves by the orchestrator's fast path (``orchestration/fast_path.py``): the call's
finish, the pass and the next call, leased to the finishing worker, in one transaction. Measured on
``bench/agents.py`` (docs/agents.md, "Measured"): together they take a step from 6 commits to 2.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from virtuousai.actions.policy import overrides_of
from virtuousai.agents.loop import AgentState, Limits, Plan, RunInfo, Tool, plan
from virtuousai.agents.run_repository import AgentRunRepository, unfinished_runs
from virtuousai.agents.spec import AgentSpecDocument, parse_spec
from virtuousai.agents.states import AgentRunStatus, StepStatus
from virtuousai.agents.tables import AgentRun, AgentRunEvent, AgentRunStep
from virtuousai.agents.tools import CALL_AGENT, TOOLS
from virtuousai.config import Settings
from virtuousai.ids import AGENT_RUN_PREFIX, new_id
from virtuousai.llm.aliases import BUILTIN_ALIASES, SETTINGS_KEY, resolve
from virtuousai.orchestration.orchestrator import Effects
from virtuousai.runtime.creation import Lease, build_runs, requires_approval
from virtuousai.runtime.kinds import KindRegistry
from virtuousai.runtime.machine import Stale
from virtuousai.runtime.states import RunStatus
from virtuousai.runtime.tables import ActionRun, ActionRunEvent
from virtuousai.runtime.transition import Finish
from virtuousai.store.drivers import Rows, Wakeup, driver_for_session
from virtuousai.store.tenant import TenantContext
from virtuousai.timeutil import utcnow

SPEC_CACHE = 256


class CallAgentInput(BaseModel):
    """``call_agent``'s arguments: which sub-agent, and what to ask it."""

    agent: str = Field(description="The slug of one of this agent's sub_agents.")
    question: str = Field(min_length=1, description="What the sub-agent should answer, with all it needs to know.")


CALL_AGENT_DESCRIPTION = "Ask one of your sub-agents (by slug) a question; its answer is the result."


@dataclass(frozen=True)
class Loaded:
    state: AgentState
    runs: AgentRunRepository
    approval_overrides: dict[str, bool]


class AgentRuns:
    """The ``ParentRuns`` of agent runs."""

    prefix = AGENT_RUN_PREFIX

    def __init__(self, registry: KindRegistry, settings: Settings) -> None:
        self.registry = registry
        self.limits = Limits(
            max_tool_calls=settings.agent_max_tool_calls,
            timeout_s=settings.agent_timeout_s,
            max_depth=settings.agent_max_depth,
            result_max_chars=settings.agent_tool_result_max_chars,
        )
        self._specs: OrderedDict[str, AgentSpecDocument] = OrderedDict()  # by version id: versions never change
        self._tools: dict[tuple[str, tuple[tuple[str, bool], ...]], dict[str, Tool]] = {}

    async def load(
        self,
        session: AsyncSession,
        tenant: TenantContext,
        run_id: str,
        kept: AgentState | None,
        finishing: Finish | None = None,
    ) -> Loaded | None:
        runs = AgentRunRepository(session, tenant)
        found = await runs.run_info(run_id)
        if found is None or found[0].status.is_terminal:
            return None
        info, version_id, org_settings, llm_connections = found
        spec = await self._spec(runs, version_id)
        if spec is None:
            return None  # pragma: no cover - versions are never deleted while their spec's runs exist
        if kept is not None and kept.run.last_event_seq == info.last_event_seq:
            steps = list(kept.steps)  # only a pass writes steps, and every pass that writes moves the version on
        else:
            steps = await runs.step_infos(run_id)
        open_calls = {step.action_run_id for step in steps if not step.status.is_terminal}
        if finishing is not None and finishing.run.id not in open_calls:
            # Not a child of an open step as this state sees it: the finish takes the general path, whose pass
            # reads it once it is written.
            raise Stale(f"agent run {run_id}: child {finishing.run.id} is not one of its open steps")
        children = await runs.children(steps, finishing)
        overrides = overrides_of(org_settings)
        sub_agents = await runs.sub_agents(spec.sub_agents) if spec.mode == "primary" else {}
        state = AgentState(
            run=info,
            spec=spec,
            steps=tuple(steps),
            children=children,
            tools=self._offered(version_id, spec, overrides, has_sub_agents=bool(sub_agents)),
            sub_agents=sub_agents,
            llm=self._llm(spec, org_settings, llm_connections),
            limits=self.limits,
            now=utcnow(),
            new_id=new_id,
            connections=await runs.org_connections() if spec.permissions.allowed_connections is not None else (),
        )
        return Loaded(state, runs, overrides)

    def plan(self, loaded: Loaded) -> Plan:
        return plan(loaded.state)

    def after(self, loaded: Loaded, planned: Plan) -> AgentState | None:
        """The state as the applied plan left it, kept for the run's next pass here (its steps, read again only when
        someone else moved the run): only a RUNNING run's, which waits on its children alone."""
        state = loaded.state
        status = planned.run_to or state.run.status
        if status is not AgentRunStatus.RUNNING:
            return None
        run = replace(state.run, status=status, last_event_seq=_version_after(state.run, planned))
        return replace(state, run=run, steps=planned.steps, children={})

    def sole_child(self, kept: AgentState | None) -> bool:
        """One open step, a model or tool call running as an ActionRun: its finish can take the next pass with it
        (``orchestration/fast_path.py``) — a model call's one tool call, a tool call's next model call. Without a
        kept state (the run's last pass was another process's: the API's first pass, a restart), yes: an agent run
        mostly waits on one call, and the pass reads it whole."""
        if kept is None:
            return True
        open_steps = [step for step in kept.steps if not step.status.is_terminal]
        return (
            kept.run.status is AgentRunStatus.RUNNING
            and len(open_steps) == 1
            and open_steps[0].status is StepStatus.RUNNING
            and open_steps[0].action_run_id is not None
        )

    async def apply(
        self,
        session: AsyncSession,
        loaded: Loaded,
        planned: Plan,
        lease: Lease | None = None,
        together: tuple[Sequence[Rows], Wakeup] | None = None,
    ) -> Effects:
        state, runs, run = loaded.state, loaded.runs, loaded.state.run
        deadline = (run.id, planned.deadline_in_s)  # None when the run is no longer RUNNING: forgotten
        if planned.empty and together is None:
            return Effects(deadline=deadline)
        children = build_runs(
            self.registry,
            planned.children,
            tenant_id=run.tenant_id,
            approval_overrides=loaded.approval_overrides,
            lease=lease if len(planned.children) == 1 else None,
        )
        events = [
            _event(run.tenant_id, run.id, run.last_event_seq + n, kind, data, state.now)
            for n, (kind, data) in enumerate(planned.events, 1)
        ]
        seq = _version_after(run, planned)
        values: dict[str, Any] = {**planned.run_values, "last_event_seq": seq, "updated_at": state.now}
        if planned.run_to is not None:
            values["status"] = planned.run_to.value
        writes = [
            runs.run_update(run.id, seen_seq=run.last_event_seq, values=values),
            runs.inserts(AgentRunStep, planned.new_steps),
            runs.step_updates(planned.changed_steps),
            runs.inserts(AgentRunEvent, events),
            runs.inserts(AgentRun, planned.agent_runs),
            runs.inserts(ActionRun, children.rows),
            runs.inserts(ActionRunEvent, children.events),
            runs.cancel_requests(planned.cancel_agent_runs, state.now),
        ]
        wakeups = [children.wakeup] if children.wakeup is not None else []
        ended = planned.run_to is not None and planned.run_to.is_terminal
        if ended:
            # Waiters hear it, and the caller of a delegated run is advanced by the process that hears it first.
            wakeups.append(Wakeup("finished", run.id, run.tenant_id, run.parent_run_id or ""))
        if together is not None:
            writes = [*together[0], *writes]
            wakeups.append(together[1])
        written = await driver_for_session(session).write_together(session, writes, wakeups)
        extra = len(together[0]) if together is not None else 0
        if any(count == 0 for count in written[: extra + 1]):
            raise Stale(f"agent run {run.id} moved since it was read")
        effects = Effects(
            cancel=list(planned.cancel_action_runs),
            leased=[row for row in children.rows if row["status"] is RunStatus.RUNNING],
            deadline=deadline,
        )
        effects.advance += [row["id"] for row in planned.agent_runs]
        effects.advance += planned.cancel_agent_runs
        changed = planned.run_to is not None or values.get("pending_approvals") is not None
        if run.parent_run_id and changed and not ended:
            effects.advance.append(run.parent_run_id)  # its caller shows what it waits for
        return effects

    async def unfinished(self, session: AsyncSession) -> list[tuple[str, str]]:
        return await unfinished_runs(session)

    # -- what load reads besides the rows ------------------------------------------------------------------------

    async def _spec(self, runs: AgentRunRepository, version_id: str) -> AgentSpecDocument | None:
        spec = self._specs.get(version_id)
        if spec is None:
            markdown = await runs.spec_markdown(version_id)
            if markdown is None:
                return None
            spec = self._specs[version_id] = parse_spec(markdown)
            if len(self._specs) > SPEC_CACHE:
                self._specs.popitem(last=False)
        return spec

    def _offered(
        self, version_id: str, spec: AgentSpecDocument, overrides: dict[str, bool], *, has_sub_agents: bool
    ) -> dict[str, Tool]:
        """The tools a run of this version offers: the spec's tools this process can run, and ``call_agent`` for a
        primary agent with sub-agents. Nothing outside the spec is offered."""
        key = (version_id, tuple(sorted(overrides.items())))
        if key in self._tools:
            return self._tools[key]
        tools: dict[str, Tool] = {}
        for name in spec.tools:
            info = TOOLS.get(name)
            if info is None:
                continue
            if name == CALL_AGENT:
                if spec.mode == "primary" and has_sub_agents:
                    schema = CallAgentInput.model_json_schema()
                    tools[name] = Tool(name, None, CALL_AGENT_DESCRIPTION, schema, CallAgentInput)
                continue
            if name not in self.registry or self.registry.get(name).internal:
                continue
            kind = self.registry.get(name)
            connection_field = kind.input_model.model_fields.get("connection")
            default_connection = connection_field.default if connection_field is not None else None
            tools[name] = Tool(
                name,
                kind.slug,
                kind.description or info.description,
                kind.input_model.model_json_schema(),
                kind.input_model,
                default_timeout_s=kind.default_timeout_s,
                gated=requires_approval(kind, overrides),
                default_connection=default_connection if isinstance(default_connection, str) else None,
            )
        if len(self._tools) > SPEC_CACHE:
            self._tools.clear()
        self._tools[key] = tools
        return tools

    @staticmethod
    def _llm(spec: AgentSpecDocument, org_settings: dict[str, Any], connections: list[str]) -> dict[str, Any] | str:
        """The model call's connections and selection, or why the organization cannot call the spec's model."""
        aliases = {**{k: dict(v) for k, v in BUILTIN_ALIASES.items()}, **(org_settings.get(SETTINGS_KEY) or {})}
        try:
            selection = resolve(spec.model, aliases)
        except ValueError as exc:
            return str(exc)
        if not connections:
            return "the organization has no LLM connection (openai, anthropic, openai_compatible or scripted)"
        return {
            "connections": connections,
            "selection": {
                "requested": selection.requested,
                "models": dict(selection.models),
                "use_connection_defaults": selection.use_connection_defaults,
            },
        }


def _version_after(run: RunInfo, planned: Plan) -> int:
    """The run's version once ``planned`` is written: every pass that writes moves it on, with or without events
    (a plan with nothing to write leaves it)."""
    return run.last_event_seq if planned.empty else run.last_event_seq + max(1, len(planned.events))


def _event(tenant_id: str, run_id: str, seq: int, kind: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "id": new_id("agevt"),
        "tenant_id": tenant_id,
        "agent_run_id": run_id,
        "seq": seq,
        "kind": kind,
        "data": data,
        "created_at": now,
    }
