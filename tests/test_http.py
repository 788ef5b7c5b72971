"""HTTP behaviour of the subgraph: status codes, Apollo error codes, GET queries, health and readiness."""

from typing import Any

import httpx
import pytest

from switchover.app import create_app
from switchover.settings import Settings


async def test_health_and_ready(client: Any) -> None:
    assert (await client.get("/health")).json() == {"status": "up"}
    assert (await client.get("/ready")).json() == {"status": "ready"}


async def test_a_get_request_runs_a_query(client: Any) -> None:
    response = await client.get(
        "/graphql", params={"query": "{ deployments { edges { cursor } } }"}, headers={"accept": "application/json"}
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"deployments": {"edges": []}}}


async def test_a_get_request_cannot_run_a_mutation(client: Any) -> None:
    query = 'mutation { addRevision(input: {deploymentId: "x", image: "m"}) { revision { id } } }'
    response = await client.get("/graphql", params={"query": query}, headers={"accept": "application/json"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("query", "variables", "status", "code"),
    [
        ("{ deployments { ", {}, 400, "GRAPHQL_PARSE_FAILED"),
        ("{ deployments { nope } }", {}, 400, "GRAPHQL_VALIDATION_FAILED"),
        ("query($id: ID!) { deployment(id: $id) { id } }", {}, 200, "BAD_USER_INPUT"),
        ("query($n: Int) { deployments(first: $n) { edges { cursor } } }", {"n": "ten"}, 200, "BAD_USER_INPUT"),
        ("query($n: Int) { deployments(first: $n) { edges { cursor } } }", {"n": 0}, 200, "BAD_USER_INPUT"),
    ],
)
async def test_errors_carry_apollo_codes(
    client: Any, query: str, variables: dict[str, Any], status: int, code: str
) -> None:
    response = await client.post("/graphql", json={"query": query, "variables": variables})

    assert response.status_code == status
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == code
    assert "exception" not in error["extensions"] and "stacktrace" not in error["extensions"]


async def test_a_refused_mutation_answers_200_so_gateways_keep_its_code(client: Any) -> None:
    unknown = "00000000-0000-0000-0000-000000000000"
    query = f'mutation {{ addRevision(input: {{deploymentId: "{unknown}", image: "m:1"}}) {{ revision {{ id }} }} }}'
    response = await client.post("/graphql", json={"query": query})

    assert response.status_code == 200
    assert response.json()["data"] is None
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_a_body_that_is_not_json_is_refused(client: Any) -> None:
    response = await client.post("/graphql", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400


async def test_oneof_is_enforced_by_the_subgraph(client: Any) -> None:
    query = """mutation {
      createDeployment(input: {projectId: "00000000-0000-0000-0000-000000000001", name: "x", replicas: 1,
        strategy: {type: ROLLING, rollingUpdate: {maxSurge: {count: 1, percent: 0.5}}}}) { deployment { id } }
    }"""
    response = await client.post("/graphql", json={"query": query})
    assert response.json()["errors"][0]["extensions"]["code"] in ("GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT")
    assert response.json().get("data") is None


async def test_with_a_router_secret_only_requests_carrying_it_are_answered(db: Any, database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, router_secret="s3cret", insecure=True), db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://switchover") as c:
        query = {"query": "{ __typename }"}
        missing = await c.post("/graphql", json=query)
        wrong = await c.post("/graphql", json=query, headers={"router-secret": "s3cre7"})
        right = await c.post("/graphql", json=query, headers={"router-secret": "s3cret"})
        health = await c.get("/health")

    assert (missing.status_code, wrong.status_code, right.status_code, health.status_code) == (403, 403, 200, 200)
    assert missing.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
