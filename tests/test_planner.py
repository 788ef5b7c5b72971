"""Plain reads answered by one SQL statement (resolvers/planner.py) must be exactly what field-by-field execution
answers: every query here runs both ways and the bodies must be equal, value for value and type for type."""

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from graphql import Executor

from resolvers.planner import PlannedExecutor
from store import deployments, json_reads, lifecycle
from store.models import RouteStatus
from store.pagination import encode_cursor
from switchover.app import create_app
from switchover.settings import Settings
from tests.graphql import error_code
from tests.scenario import Scenario, blue_green
from tests.tokens import SECRET, bearer

PROJECT = str(uuid.uuid4())

EVERY_FIELD = """
fragment Revision on Revision { __typename id number image env healthCheckPath createdAt }
query($first: Int!) {
  __typename
  deployments(first: $first) {
    __typename
    pageInfo { __typename hasNextPage endCursor }
    edges {
      __typename cursor
      node {
        __typename id name projectId replicas lifecycle subStep phaseStartedAt createdAt updatedAt
        currentRevision { ...Revision deployment { id name } }
        deployingRevision { ...Revision }
        routes { __typename id status trafficStatus trafficRatio endpointUrl createdAt updatedAt
                 revision { number } deployment { id } }
        revisions(first: 1) { pageInfo { hasNextPage endCursor } edges { cursor node { number } } }
        history(first: 3) {
          pageInfo { hasNextPage endCursor }
          edges { cursor node { __typename id phase fromLifecycle toLifecycle fromSubStep toSubStep result message
                                errorCode attempts actor createdAt updatedAt } }
        }
      }
    }
  }
}
"""


@pytest.fixture
async def fleet(db: Any) -> dict[str, Any]:
    """Deployments in several states, two of them in PROJECT: serving, awaiting promotion, promoted, rolled back,
    never deployed; routes with traffic ratios 0, 0.5 and 1; env with quotes, newlines and non-ASCII text."""
    env = {"QUOTE": 'say "hi"', "LINES": "a\nb\\c", "TEXT": "grüße ☃", "EMPTY": ""}
    serving = await (await Scenario(db).given_deployment(replicas=2)).ready_on_first_revision()
    awaiting = await (await Scenario(db).given_deployment(replicas=2)).awaiting_promotion_of_revision_2()
    promoted = await (await Scenario(db).given_deployment(replicas=1)).awaiting_promotion_of_revision_2()
    await lifecycle.promote(db, promoted.id, actor="alice")
    rolled_back = await (await Scenario(db).given_deployment(replicas=1)).ready_on_first_revision()
    await rolled_back.deploy(await rolled_back.add_revision(env=env))
    await rolled_back.tick()
    await lifecycle.begin_rollback(db, rolled_back.id, actor="alice", reason="bad canary")
    await rolled_back.tick()
    await rolled_back.report(RouteStatus.TERMINATED, revision=2)
    await rolled_back.tick()
    fresh = await deployments.create_deployment(
        db, project_id=PROJECT, name="fresh", replicas=3, strategy=blue_green(), actor="alice"
    )
    mine = await deployments.create_deployment(
        db, project_id=PROJECT, name="mine", replicas=1, strategy=blue_green(), actor="alice"
    )
    revision = await deployments.add_revision(
        db, deployment_id=mine.id, image="model:7", env=env, health_check_path="/ok", actor="alice"
    )
    awaiting_routes = await awaiting.routes()
    return {
        "serving": serving.id,
        "awaiting": awaiting.id,
        "promoted": promoted.id,
        "rolled_back": rolled_back.id,
        "fresh": fresh.id,
        "mine": mine.id,
        "revision": revision.id,
        "route": awaiting_routes[-1].id,
        "first_revision": awaiting.revisions[0],
    }


class Planned:
    """Counts the requests the planner answered by itself."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        answer = json_reads.answer

        async def counting(*args: Any) -> Any:
            self.count += 1
            return await answer(*args)

        monkeypatch.setattr(json_reads, "answer", counting)


def same(a: Any, b: Any, path: str = "") -> None:
    """Equal values of equal JSON types (1.0 and 1 are not the same answer to a Float field)."""
    assert type(a) is type(b), (path, a, b)
    if isinstance(a, dict):
        assert list(a) == list(b), (path, list(a), list(b))
        for key in a:
            same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), (path, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


async def both_ways(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, query: str, variables: dict[str, Any], **headers: str
) -> tuple[int, dict[str, Any], bool]:
    """The planner's answer, checked against execution's; and whether the planner answered it."""
    planned = Planned(monkeypatch)
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    with monkeypatch.context() as patch:
        patch.setattr(PlannedExecutor, "execute_operation", Executor.execute_operation)
        reference = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert response.status_code == reference.status_code
    body = response.json()
    same(body, reference.json())
    return response.status_code, body, planned.count > 0


def queries(f: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    after_first = encode_cursor("deployment", 1)
    return [
        (EVERY_FIELD, {"first": 10}),
        (EVERY_FIELD, {"first": 2}),
        ("query($id: ID!) { deployment(id: $id) { id routes { id trafficRatio } } }", {"id": f["serving"]}),
        ("query($id: ID!) { d: deployment(id: $id) { n: name, name id } }", {"id": f["promoted"].upper()}),
        ('{ deployment(id: "not-a-uuid") { id } other: deployment(id: "' + str(uuid.uuid4()) + '") { id } }', {}),
        ("query($id: ID!) { revision(id: $id) { number env deployment { name currentRevision { id } } } }",
         {"id": f["revision"]}),
        ("query($id: ID!) { route(id: $id) { status trafficStatus revision { number } deployment { lifecycle } } }",
         {"id": f["route"]}),
        ("query($id: ID!, $skip: Boolean!, $with: Boolean!) { deployment(id: $id) {"
         " id @skip(if: $skip) name @include(if: $with) ... on Deployment { replicas } ...D @skip(if: $with) } }"
         " fragment D on Deployment { lifecycle }", {"id": f["awaiting"], "skip": True, "with": False}),
        ("query($id: ID!) { deployment(id: $id) { active: routes(trafficStatus: ACTIVE) { id trafficStatus }"
         " inactive: routes(trafficStatus: INACTIVE) { id } healthy: routes(status: [HEALTHY, PROVISIONING]) { id }"
         " none: routes(status: []) { id } } }", {"id": f["awaiting"]}),
        ("query($id: ID!, $after: String) { deployment(id: $id) { revisions(first: 1, after: $after) {"
         " pageInfo { hasNextPage endCursor } edges { cursor node { number } } } } }",
         {"id": f["awaiting"], "after": encode_cursor("revision", 1)}),
        ("query($id: ID!, $after: String) { deployment(id: $id) { history(first: 2, after: $after) {"
         " pageInfo { hasNextPage endCursor } edges { cursor node { phase } } } } }",
         {"id": f["awaiting"], "after": encode_cursor("history", 10**6)}),
        ("query($after: String) { deployments(first: 2, after: $after) { pageInfo { hasNextPage endCursor }"
         " edges { cursor node { name } } } }", {"after": after_first}),
        ("{ deployments(lifecycle: [PENDING]) { edges { node { name lifecycle } } } }", {}),
        ("{ deployments(lifecycle: []) { edges { node { name } } pageInfo { hasNextPage endCursor } } }", {}),
        ("query($p: ID) { deployments(projectId: $p, name: \"mine\") { edges { node { name projectId } } } }",
         {"p": PROJECT}),
        ("query($p: ID) { deployments(projectId: $p) { edges { node { name } } } }", {"p": str(uuid.uuid4())}),
        ('{ deployments { edges { node { name } } } revision(id: "' + f["first_revision"] + '") { number } }', {}),
    ]  # fmt: skip


async def test_plain_reads_answer_exactly_what_execution_answers(
    client: httpx.AsyncClient, fleet: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for query, variables in queries(fleet):
        status, body, planned = await both_ways(client, monkeypatch, query, variables)
        assert status == 200 and "errors" not in body, (query, body)
        assert planned, f"the planner left this plain read to execution: {query}"
    # The fleet is really in those states (a typo in a fixture would make the comparisons above vacuous).
    _, body, _ = await both_ways(client, monkeypatch, EVERY_FIELD, {"first": 10})
    nodes = [e["node"] for e in body["data"]["deployments"]["edges"]]
    assert {n["lifecycle"] for n in nodes} >= {"READY", "DEPLOYING", "PENDING"}
    assert {r["trafficRatio"] for n in nodes for r in n["routes"]} >= {0.0, 0.5, 1.0}
    _, body, _ = await both_ways(client, monkeypatch, "query($id: ID!) { revision(id: $id) { env } }",
                                 {"id": fleet["revision"]})  # fmt: skip
    assert body["data"]["revision"]["env"]["TEXT"] == "grüße ☃"


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        # Cursors of positions beyond a 32-bit integer, forged or not, page like any other.
        ("query($id: ID!, $a: String) { deployment(id: $id) { revisions(after: $a) { pageInfo { hasNextPage }"
         " edges { node { number } } } } }", {"a": encode_cursor("revision", 2**31)}),
        ("query($id: ID!, $a: String) { deployment(id: $id) { revisions(after: $a) { edges { node { number } } } } }",
         {"a": encode_cursor("revision", -(2**31) - 1)}),
        # A null sent for a defaulted variable makes @skip's `if` invalid: execution reports it, not the planner.
        ("query($id: ID!, $s: Boolean = false) { deployment(id: $id) { id name @skip(if: $s) } }", {"s": None}),
        ("query($s: Boolean = true) { __typename @include(if: $s) }", {"s": None}),
    ],
)  # fmt: skip
async def test_edge_cases_answer_alike_both_ways(
    client: httpx.AsyncClient,
    fleet: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    query: str,
    variables: dict[str, Any],
) -> None:
    await both_ways(client, monkeypatch, query, {"id": fleet["awaiting"], **variables})


async def test_a_float_is_written_in_full_whatever_the_servers_float_digits(
    client: httpx.AsyncClient, fleet: dict[str, Any], monkeypatch: pytest.MonkeyPatch, db: Any, database_url: str
) -> None:
    await db.execute(
        "UPDATE routes SET traffic_ratio = 1.0 / 3 WHERE id = (SELECT id FROM routes WHERE traffic_status = 'ACTIVE'"
        " AND deployment_id = :id ORDER BY seq LIMIT 1)",
        {"id": fleet["awaiting"]},
    )
    await db.execute(f'ALTER DATABASE "{database_url.rsplit("/", 1)[1]}" SET extra_float_digits = 0')
    await db.disconnect()
    await db.connect()
    query = "query($id: ID!) { deployment(id: $id) { routes { trafficRatio } } }"
    _, body, planned = await both_ways(client, monkeypatch, query, {"id": fleet["awaiting"]})
    assert planned and 1 / 3 in [r["trafficRatio"] for r in body["data"]["deployment"]["routes"]]


async def test_what_the_planner_cannot_answer_exactly_is_left_to_execution(
    client: httpx.AsyncClient, fleet: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Computed fields, federation, and arguments execution refuses (it reports them with their codes).
    for query, variables, code in [
        ("query($id: ID!) { deployment(id: $id) { nextActionAt waitingFor { reason } } }", {"id": fleet["awaiting"]},
         None),
        ("query($id: ID!) { deployment(id: $id) { strategy { type } } }", {"id": fleet["serving"]}, None),
        ("{ _service { sdl } }", {}, None),
        ("{ deployments(first: 0) { edges { cursor } } }", {}, "BAD_USER_INPUT"),
        ("{ deployments(after: \"bm90LWEtY3Vyc29y\") { edges { cursor } } }", {}, "BAD_USER_INPUT"),
        ("{ deployments(projectId: \"nope\") { edges { cursor } } }", {}, "BAD_USER_INPUT"),
        ("query($id: ID!) { deployment(id: $id) { history(first: 500) { edges { cursor } } } }",
         {"id": fleet["serving"]}, "BAD_USER_INPUT"),
        ("query($id: ID!) { deployment(id: $id) { a: routes(status: [HEALTHY]) { id } a: routes { id } } }",
         {"id": fleet["serving"]}, "GRAPHQL_VALIDATION_FAILED"),
    ]:  # fmt: skip
        _, body, planned = await both_ways(client, monkeypatch, query, variables)
        assert not planned, query
        if code is None:
            assert "errors" not in body, body
        else:
            assert error_code(body) == code, body


@pytest.fixture
async def secure(db: Any, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=database_url, jwt_secret=SECRET, max_cost=300), db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://switchover") as c:
        yield c


async def test_the_planner_shows_a_caller_its_own_projects_only(
    secure: httpx.AsyncClient, fleet: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    viewer = bearer("vera", roles=["viewer"], projects=[PROJECT])
    listing = "{ deployments { edges { node { name projectId } } } }"
    _, body, planned = await both_ways(secure, monkeypatch, listing, {}, **viewer)
    assert planned
    assert sorted(e["node"]["name"] for e in body["data"]["deployments"]["edges"]) == ["fresh", "mine"]
    # Projects in the token without a role to read them show nothing.
    roleless = jwt.encode({"sub": "nora", "roles": [], "projects": [PROJECT], "exp": time.time() + 60}, SECRET)
    _, body, _ = await both_ways(secure, monkeypatch, listing, {}, authorization=f"Bearer {roleless}")
    assert body["data"]["deployments"]["edges"] == []

    own = "query($id: ID!) { revision(id: $id) { number deployment { name } } }"
    _, body, planned = await both_ways(secure, monkeypatch, own, {"id": fleet["revision"]}, **viewer)
    assert planned and body["data"]["revision"]["deployment"]["name"] == "mine"
    for query, id_ in [
        ("query($id: ID!) { deployment(id: $id) { name } }", fleet["serving"]),
        ("query($id: ID!) { route(id: $id) { id } }", fleet["route"]),
        ("query($id: ID!) { revision(id: $id) { id } }", fleet["first_revision"]),
    ]:
        _, body, _ = await both_ways(secure, monkeypatch, query, {"id": id_}, **viewer)
        assert error_code(body) == "FORBIDDEN", body
    _, body, _ = await both_ways(
        secure, monkeypatch, "query($p: ID) { deployments(projectId: $p) { edges { cursor } } }",
        {"p": str(uuid.uuid4())}, **viewer,
    )  # fmt: skip
    assert error_code(body) == "FORBIDDEN"
    _, body, planned = await both_ways(secure, monkeypatch, listing, {})
    assert not planned and error_code(body) == "UNAUTHENTICATED"


async def test_the_cost_limit_holds_for_every_page_size_of_one_query_text(
    secure: httpx.AsyncClient, fleet: dict[str, Any]
) -> None:
    # Cost results are cached per query text and page size: a cached small page must not let a large one through.
    query = "query($n: Int) { deployments(first: $n) { edges { node { routes { id } history(first: $n) { edges {"
    query += " cursor } } } } } }"
    headers = bearer("ada", roles=["admin"])
    for n, allowed in [(2, True), (100, False), (2, True), (3, True), (100, False)]:
        response = await secure.post("/graphql", json={"query": query, "variables": {"n": n}}, headers=headers)
        body = response.json()
        if allowed:
            assert response.status_code == 200 and "errors" not in body, body
        else:
            assert response.status_code == 400 and "cost" in body["errors"][0]["message"].lower(), body
