"""Switchover behind real gateways (Apollo's JavaScript gateway and Hive Gateway) from the composed supergraph,
with the fixture subgraph that owns `Project`: what a client of the supergraph sees."""

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from scheduler.runner import run_once
from store.database import open_database
from tests import tokens
from tests.conftest import create_database, drop_database, url_of
from tests.tokens import bearer

ROOT = Path(__file__).resolve().parent.parent
FEDERATION = ROOT / "federation"
SECRET = "a-router-secret-for-tests"

pytestmark = pytest.mark.skipif(
    not (FEDERATION / "node_modules").exists() or shutil.which("node") is None,
    reason="gateway tests need Node.js and `npm ci` in federation/ (make test does both)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    gateway: str
    subgraph: str
    database_url: str

    def gql(self, query: str, headers: dict[str, str] | None = None, **variables: Any) -> dict[str, Any]:
        headers = bearer("gateway-test", roles=["admin"]) if headers is None else headers
        response = httpx.post(self.gateway, json={"query": query, "variables": variables}, headers=headers, timeout=30)
        return response.json()

    def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = self.gql(query, **variables)
        assert not body.get("errors"), body
        return body["data"]


def wait_for(url: str, process: subprocess.Popen[bytes], headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, f"{process.args} exited with {process.returncode}"
        try:
            response = httpx.post(url, json={"query": "{ __typename }"}, headers=headers or {}, timeout=2)
            if response.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} not ready in 60 s"
        time.sleep(0.1)


@pytest.fixture(scope="module", params=["apollo", "hive"])
def stack(
    request: pytest.FixtureRequest, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp(f"gateway-{request.param}")
    database = create_database(template=template_database)
    subgraph_port, projects_port, gateway_port = free_port(), free_port(), free_port()
    supergraph = (ROOT / "supergraph.graphql").read_text()
    supergraph = supergraph.replace("http://127.0.0.1:8000/graphql", f"http://127.0.0.1:{subgraph_port}/graphql")
    supergraph = supergraph.replace("http://127.0.0.1:4002/graphql", f"http://127.0.0.1:{projects_port}/graphql")
    (tmp / "supergraph.graphql").write_text(supergraph)
    env = {
        **os.environ,
        "DATABASE_URL": url_of(database),
        "SWITCHOVER_ROUTER_SECRET": SECRET,
        "ROUTER_SECRET": SECRET,
        "SWITCHOVER_JWT_SECRET": tokens.SECRET,
    }
    log = (tmp / "processes.log").open("ab")
    gateway_command = {
        "apollo": ["node", str(FEDERATION / "apollo-gateway.mjs"), str(tmp / "supergraph.graphql"), str(gateway_port)],
        "hive": [
            str(FEDERATION / "node_modules" / ".bin" / "hive-gateway"), "supergraph", str(tmp / "supergraph.graphql"),
            "--port", str(gateway_port), "--host", "127.0.0.1", "--config-path", str(FEDERATION / "hive.config.mjs"),
        ],
    }[request.param]  # fmt: skip
    processes = [
        subprocess.Popen([sys.executable, "-m", "switchover", "serve", "--port", str(subgraph_port)], env=env,
                         stdout=log, stderr=log),
        subprocess.Popen([sys.executable, "-m", "tests.fixtures.projects_subgraph", str(projects_port)], env=env,
                         stdout=log, stderr=log, cwd=ROOT),
        subprocess.Popen(gateway_command, env=env, stdout=log, stderr=log, cwd=FEDERATION),
    ]  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{subgraph_port}/graphql", processes[0], {"router-secret": SECRET})
        wait_for(f"http://127.0.0.1:{projects_port}/graphql", processes[1])
        wait_for(f"http://127.0.0.1:{gateway_port}/graphql", processes[2])
        yield Stack(f"http://127.0.0.1:{gateway_port}/graphql", f"http://127.0.0.1:{subgraph_port}/graphql",
                    url_of(database))  # fmt: skip
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
        drop_database(database)


CREATE = """
mutation($p: ID!, $name: String!) {
  createDeployment(input: {projectId: $p, name: $name, replicas: 2, strategy: {type: BLUE_GREEN}}) {
    deployment { id name }
  }
}"""


def create(stack: Stack) -> tuple[str, str]:
    project = str(uuid.uuid4())
    deployment = stack.data(CREATE, p=project, name="ranker")["createDeployment"]["deployment"]
    return project, deployment["id"]


def test_a_query_crosses_from_a_project_to_its_deployments(stack: Stack) -> None:
    project, deployment_id = create(stack)

    result = stack.data(
        """query($p: ID!, $d: ID!) {
             project(id: $p) { id name deployments { edges { node { id name lifecycle } } } }
             deployment(id: $d) { name projectId }
           }""",
        p=project,
        d=deployment_id,
    )

    assert result["project"] == {
        "id": project,
        "name": f"project {project[:8]}",
        "deployments": {"edges": [{"node": {"id": deployment_id, "name": "ranker", "lifecycle": "PENDING"}}]},
    }
    assert result["deployment"] == {"name": "ranker", "projectId": project}


def test_error_codes_survive_the_gateway(stack: Stack) -> None:
    _, deployment_id = create(stack)

    refused = stack.gql(
        "mutation($d: ID!) { promoteDeployment(input: {deploymentId: $d}) { dryRun } }", d=deployment_id
    )
    invalid = stack.gql(CREATE, p=str(uuid.uuid4()), name="Not A DNS Label")

    assert refused["errors"][0]["extensions"]["code"] == "INVALID_STATE"
    assert "awaiting promotion" in refused["errors"][0]["message"]
    assert invalid["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_the_subgraph_refuses_direct_calls_without_the_router_secret(stack: Stack) -> None:
    direct = httpx.post(stack.subgraph, json={"query": "{ deployments { edges { cursor } } }"})
    wrong = httpx.post(stack.subgraph, json={"query": "{ __typename }"}, headers={"router-secret": "guess"})

    assert direct.status_code == 403
    assert direct.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert wrong.status_code == 403
    assert stack.data("{ deployments(first: 1) { pageInfo { hasNextPage } } }")  # through the gateway: fine


async def test_a_full_blue_green_rollout_through_the_gateway(stack: Stack) -> None:
    _, deployment_id = create(stack)
    db = open_database(stack.database_url)
    await db.connect()
    try:
        revisions = [
            stack.data(
                "mutation($d: ID!, $i: String!) { addRevision(input: {deploymentId: $d, image: $i}) "
                "{ revision { id } } }",
                d=deployment_id,
                i=image,
            )["addRevision"]["revision"]["id"]
            for image in ("ranker:1", "ranker:2")
        ]

        async def roll_out(revision_id: str) -> None:
            stack.data(
                "mutation($d: ID!, $r: ID!) { deployRevision(input: {deploymentId: $d, revisionId: $r}) "
                "{ deployment { lifecycle } } }",
                d=deployment_id,
                r=revision_id,
            )
            await run_once(db)  # the scheduler starts the green routes
            routes = stack.data(
                "query($d: ID!) { deployment(id: $d) { routes(status: [PROVISIONING]) { id } } }", d=deployment_id
            )["deployment"]["routes"]
            for route in routes:  # the orchestrator reports them healthy, through the router as well
                stack.data(
                    "mutation($r: ID!) { reportRouteHealth(input: {routeId: $r, status: HEALTHY}) "
                    "{ route { status } } }",
                    r=route["id"],
                )
            await run_once(db)

        await roll_out(revisions[0])  # a first deploy is promoted by the scheduler
        await roll_out(revisions[1])
        waiting = stack.data("query($d: ID!) { deployment(id: $d) { subStep } }", d=deployment_id)
        assert waiting["deployment"]["subStep"] == "DEPLOYING_AWAITING_PROMOTION"

        promoted = stack.data(
            """mutation($d: ID!, $r: ID!) {
                 promoteDeployment(input: {deploymentId: $d, expectedRevisionId: $r}) {
                   deployment { lifecycle currentRevision { image } }
                   promotedRoutes { trafficStatus trafficRatio revision { image } }
                   drainedRoutes { trafficStatus revision { image } }
                 }
               }""",
            d=deployment_id,
            r=revisions[1],
        )["promoteDeployment"]

        assert promoted["deployment"] == {"lifecycle": "READY", "currentRevision": {"image": "ranker:2"}}
        assert (
            promoted["promotedRoutes"]
            == [{"trafficStatus": "ACTIVE", "trafficRatio": 0.5, "revision": {"image": "ranker:2"}}] * 2
        )
        assert promoted["drainedRoutes"] == [{"trafficStatus": "INACTIVE", "revision": {"image": "ranker:1"}}] * 2
    finally:
        await db.disconnect()


def test_tokens_are_forwarded_and_checked_behind_the_gateway(stack: Stack) -> None:
    project, deployment_id = create(stack)
    read = "query($d: ID!) { deployment(id: $d) { name } }"
    crossing = "query($p: ID!) { project(id: $p) { name deployments { edges { node { name } } } } }"
    promote = "mutation($d: ID!) { promoteDeployment(input: {deploymentId: $d}) { dryRun } }"
    viewer = bearer("val", roles=["viewer"], projects=[project])
    stranger = bearer("sam", roles=["operator"], projects=[str(uuid.uuid4())])

    anonymous = stack.gql(read, headers={}, d=deployment_id)
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert stack.gql(read, headers=viewer, d=deployment_id)["data"] == {"deployment": {"name": "ranker"}}
    assert stack.gql(promote, headers=viewer, d=deployment_id)["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert stack.gql(read, headers=stranger, d=deployment_id) == stack.gql(read, headers=stranger, d=str(uuid.uuid4()))
    through_entities = stack.gql(crossing, headers=stranger, p=project)
    assert through_entities["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "ranker" not in str(through_entities.get("data"))
