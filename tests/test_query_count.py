"""A page of deployments with their revision, routes and history costs the same number of SQL statements whatever
its size: one when the planner answers it, and on the execution path every nested field is batched per request,
never fetched per deployment."""

import uuid
from typing import Any

import pytest

from scheduler.runner import run_once
from store import deployments, json_reads, reads, rollouts, route_health
from store.models import RouteStatus
from tests.graphql import data
from tests.scenario import blue_green

PAGE = """
query($first: Int!) {
  deployments(first: $first) {
    edges {
      node {
        id name
        currentRevision { number image }
        routes { id status trafficStatus }
        history(first: 5) { edges { node { phase message } } }
      }
    }
  }
}
"""

STATEMENTS = ("fetch_all", "fetch_one", "fetch_val", "execute", "execute_many", "iterate")


async def add_serving_deployments(db: Any, count: int) -> None:
    """`count` deployments serving their first revision on one HEALTHY route each."""
    created = []
    for _ in range(count):
        d = await deployments.create_deployment(
            db,
            project_id=str(uuid.uuid4()),
            name=f"model-{uuid.uuid4().hex[:8]}",
            replicas=1,
            strategy=blue_green(),
            actor="test",
        )
        revision = await deployments.add_revision(
            db, deployment_id=d.id, image="model:1", env=None, health_check_path=None, actor="test"
        )
        await rollouts.deploy_revision(db, d.id, revision.id, actor="test")
        created.append(d.id)
    await run_once(db)
    for routes in (await reads.routes_of_deployments(db, created)).values():
        for route in routes:
            await route_health.report_route_health(db, route.id, RouteStatus.HEALTHY, actor="test")
    await run_once(db)


def count_statements(db: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement sent through `db` from now on, in order."""
    sent: list[str] = []
    for name in STATEMENTS:
        original = getattr(db, name)

        def counting(query: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            sent.append(str(query))
            return _original(query, *args, **kwargs)

        monkeypatch.setattr(db, name, counting)
    answer = json_reads.answer

    async def planned(db: Any, statement: json_reads.Statement) -> Any:
        sent.append(statement.sql)
        return await answer(db, statement)

    monkeypatch.setattr(json_reads, "answer", planned)
    return sent


async def statements_per_page(client: Any, db: Any, monkeypatch: pytest.MonkeyPatch, query: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    total = len((await data(client, query, {"first": 100}))["deployments"]["edges"])
    for size in (1, 10, 100):
        await add_serving_deployments(db, size - total)
        total = size
        with monkeypatch.context() as patch:
            sent = count_statements(db, patch)
            result = await data(client, query, {"first": size})
        edges = result["deployments"]["edges"]
        assert len(edges) == size
        for edge in edges:
            node = edge["node"]
            assert node["currentRevision"] == {"number": 1, "image": "model:1"}
            assert [r["status"] for r in node["routes"]] == ["HEALTHY"]
            assert node["history"]["edges"][0]["node"]["phase"] == "promote"
        counts[size] = len(sent)
    return counts


async def test_a_page_of_deployments_takes_one_statement_for_1_10_and_100(
    client: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = await statements_per_page(client, db, monkeypatch, PAGE)
    assert counts == {1: 1, 10: 1, 100: 1}, counts


async def test_on_the_execution_path_the_page_takes_the_same_number_of_statements_for_1_10_and_100(
    client: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `nextActionAt` is computed in Python: the planner leaves the query to execution and its batching loaders.
    computed = PAGE.replace("id name", "id name nextActionAt")
    counts = await statements_per_page(client, db, monkeypatch, computed)
    # The page, the current revisions, the routes and the history: one batched statement each.
    assert counts[1] == counts[10] == counts[100], counts
    assert counts[1] <= 4, counts
