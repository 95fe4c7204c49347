"""An agent run with the data tools on a real lake: the model writes a wrong column, is told which, and corrects
itself with a new call; then it lets the organization's ``fast`` model write the SQL, and the run pays for that
call too."""

from __future__ import annotations

from decimal import Decimal

from fastapi import FastAPI

from tests.agents.conftest import CALL_COST, Agents
from tests.data.conftest import publish_rows
from tests.llm.fake_providers import SeenRequest, Turn
from virtuousai.data.lake import TenantLake

WRITTEN_SQL = "SELECT status, count(*) AS orders FROM bronze.shop.orders GROUP BY status ORDER BY status"


def _script(seen: SeenRequest) -> Turn:
    if not seen.tool_names:  # generate_query asking the fast model for SQL: no tools are offered to it
        return Turn(text=f"```sql\n{WRITTEN_SQL};\n```")
    question = "Revenue by status?"
    return [
        Turn(tool_calls=[("generate_query", {"question": question, "sql": "SELECT amout FROM bronze.shop.orders"})]),
        Turn(
            text="I misspelled the column.",
            tool_calls=[
                ("generate_query", {"question": question, "sql": "SELECT sum(amount) FROM bronze.shop.orders"})
            ],
        ),
        Turn(tool_calls=[("generate_query", {"question": "How many orders per status?"})]),
        Turn(text="Revenue is 42.0 over 2 paid and 1 open order."),
    ][seen.turn]


async def test_the_model_corrects_its_sql_and_the_fast_models_call_is_paid_for(agents: Agents, app: FastAPI) -> None:
    lake = TenantLake(app.state.settings.lake_dir, agents.org.org_id)
    publish_rows(
        lake,
        "bronze.shop.orders",
        [{"status": "paid", "amount": 30.0}, {"status": "paid", "amount": 7.0}, {"status": "open", "amount": 5.0}],
    )
    tag = await agents.llm(_script)
    await agents.spec("analyst", tools=("generate_query", "explain_schema"))
    run = await agents.wait((await agents.start("analyst", "How is revenue?"))["id"])
    assert run["status"] == "COMPLETED", run

    steps = [s for s in await agents.steps(run["id"]) if s["kind"] == "tool"]
    assert [s["status"] for s in steps] == ["FAILED", "COMPLETED", "COMPLETED"]
    assert "amout" in steps[0]["error"]["message"]  # the tool error names the problem …
    requests = agents.fake.requests_for(tag)
    agent_requests = [r for r in requests if r.tool_names]
    assert "amout" in agent_requests[1].tool_results[0]  # … and the model was given it
    assert "42.0" in agent_requests[2].tool_results[-1]

    written = await agents.call("GET", f"/api/v1/action-runs/{steps[2]['action_run_id']}")
    out = written["output"]
    assert (out["generated"], out["sql"]) == (True, WRITTEN_SQL.replace("count(*)", "COUNT(*)"))
    assert out["rows"] == [["open", 1], ["paid", 2]]
    assert Decimal(out["model_usage"]["cost"]) == Decimal(CALL_COST)
    sql_request = next(r for r in requests if not r.tool_names)
    prompt = str(sql_request.body["messages"])
    assert "bronze.shop.orders" in prompt and "amount" in prompt and "How many orders per status?" in prompt

    # Four calls of the agent's model and one of the fast model: the run paid for all five.
    assert len(requests) == 5
    assert Decimal(run["cost"]) == 5 * Decimal(CALL_COST)
    assert run["model_calls"] == 4
