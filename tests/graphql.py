"""Helpers for talking GraphQL to the app in tests."""

from typing import Any

import httpx


async def gql(client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Execute and return the whole response body; the HTTP status must agree with what happened."""
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}})
    body = response.json()
    assert response.status_code == (200 if "data" in body else 400), (response.status_code, body)
    return body


async def data(client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Execute and return `data`, failing the test on any error."""
    body = await gql(client, query, variables)
    assert "errors" not in body, body["errors"]
    return body["data"]


def error_code(body: dict[str, Any]) -> str:
    assert body.get("errors"), body
    return body["errors"][0]["extensions"]["code"]


async def post(client: httpx.AsyncClient, query: str, headers: dict[str, str] | None = None, **variables: Any) -> Any:
    """The whole response body, whatever its status (refusals included), with request `headers` (a bearer token)."""
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers or {})
    return response.json()


def refusal(body: dict[str, Any]) -> tuple[str, str]:
    """The first error's code and message."""
    assert body.get("errors"), body
    return body["errors"][0]["extensions"]["code"], body["errors"][0]["message"]


CREATE = """
mutation Create($input: CreateDeploymentInput!) {
  createDeployment(input: $input) {
    deployment {
      id name projectId replicas lifecycle subStep phaseStartedAt nextActionAt createdAt updatedAt
      strategy {
        type provisioningTimeoutSeconds maxRetries
        blueGreen { autoPromote promoteDelaySeconds promotionTimeoutSeconds scaleDownDelaySeconds }
        rollingUpdate { maxSurge { count percent } maxUnavailable { count percent } }
      }
      currentRevision { id }
      deployingRevision { id }
    }
  }
}
"""

ADD_REVISION = """
mutation Add($input: AddRevisionInput!) {
  addRevision(input: $input) { revision { id number image env healthCheckPath createdAt deployment { id name } } }
}
"""


def deployment_input(project_id: str, name: str = "sentiment", replicas: int = 2, **strategy: Any) -> dict[str, Any]:
    return {
        "projectId": project_id,
        "name": name,
        "replicas": replicas,
        "strategy": {"type": "BLUE_GREEN", **strategy},
    }
