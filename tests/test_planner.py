"""Plain reads answered by one SQL statement (resolvers/planner.py) must be exactly what field-by-field execution
answers: every query here runs both ways and the bodies must be equal, value for value and type for type."""

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest
from ariadne import ObjectType, QueryType, SchemaBindable
from graphql import Executor, GraphQLResolveInfo, GraphQLSchema
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from resolvers import make_schema
from resolvers.entities import resolve_route_revision
from resolvers.planner import PlannedExecutor
from resolvers.query import resolve_deployments
from store import deployments, json_reads, rollouts
from store.database import open_database
from store.models import RouteStatus
from store.pagination import encode_cursor
from switchover.app import create_app
from switchover.settings import Settings
from tests.graphql import error_code
from tests.read_queries import Records, read_queries
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
    return await make_fleet(db)


async def make_fleet(db: Any) -> dict[str, Any]:
    """Deployments in several states, two of them in PROJECT: serving, awaiting promotion, promoted, rolled back,
    never deployed; routes with traffic ratios 0, 0.5 and 1; env with quotes, newlines and non-ASCII text."""
    env = {"QUOTE": 'say "hi"', "LINES": "a\nb\\c", "TEXT": "grüße ☃", "EMPTY": ""}
    serving = await (await Scenario(db).given_deployment(replicas=2)).ready_on_first_revision()
    awaiting = await (await Scenario(db).given_deployment(replicas=2)).awaiting_promotion_of_revision_2()
    promoted = await (await Scenario(db).given_deployment(replicas=1)).awaiting_promotion_of_revision_2()
    await rollouts.promote(db, promoted.id, actor="alice")
    rolled_back = await (await Scenario(db).given_deployment(replicas=1)).ready_on_first_revision()
    await rolled_back.deploy(await rolled_back.add_revision(env=env))
    await rolled_back.tick()
    await rollouts.begin_rollback(db, rolled_back.id, actor="alice", reason="bad canary")
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
    """Whether the planner answered a request by itself: its statement ran and returned, and execution never ran
    (after a failed or refused statement the planner hands the request to execution); and whether a statement
    failed."""

    def __init__(self, patch: pytest.MonkeyPatch) -> None:
        self.answered = 0
        self.failed: list[Exception] = []
        self.executed = 0
        answer = json_reads.answer
        execute = Executor.execute_operation

        async def counting_answer(*args: Any) -> Any:
            try:
                result = await answer(*args)
            except Exception as failure:
                self.failed.append(failure)
                raise
            self.answered += 1
            return result

        def counting_execute(executor: Executor, *args: Any, **kwargs: Any) -> Any:
            self.executed += 1
            return execute(executor, *args, **kwargs)

        patch.setattr(json_reads, "answer", counting_answer)
        patch.setattr(Executor, "execute_operation", counting_execute)

    @property
    def by_itself(self) -> bool:
        return self.answered > 0 and self.executed == 0


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
    with monkeypatch.context() as patch:
        planned = Planned(patch)
        response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    with monkeypatch.context() as patch:
        patch.setattr(PlannedExecutor, "execute_operation", Executor.execute_operation)
        reference = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    # Execution answers after a failed statement too, so a failure would hide a shape the planner writes wrong.
    assert not planned.failed, (query, planned.failed)
    assert response.status_code == reference.status_code
    body = response.json()
    same(in_order(body), in_order(reference.json()))
    return response.status_code, body, planned.by_itself


def in_order(body: dict[str, Any]) -> dict[str, Any]:
    """The body with its errors sorted: execution lists them in the order fields fail, which varies from run to run
    for sibling fields that wait on the database (and the planner itself reports none)."""
    if "errors" not in body:
        return body
    return {**body, "errors": sorted(body["errors"], key=lambda error: json.dumps(error, sort_keys=True))}


async def test_plain_reads_answer_exactly_what_execution_answers(
    client: httpx.AsyncClient, fleet: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every field the planner may answer, at once; their combinations are drawn by the generated test below.
    for first in (10, 2):
        status, body, planned = await both_ways(client, monkeypatch, EVERY_FIELD, {"first": first})
        assert status == 200 and "errors" not in body, body
        assert planned, "the planner left a plain read to execution"
    # The fleet is really in those states (a typo in a fixture would make the comparisons vacuous).
    _, body, _ = await both_ways(client, monkeypatch, EVERY_FIELD, {"first": 10})
    nodes = [e["node"] for e in body["data"]["deployments"]["edges"]]
    assert {n["lifecycle"] for n in nodes} >= {"READY", "DEPLOYING", "PENDING"}
    assert {r["trafficRatio"] for n in nodes for r in n["routes"]} >= {0.0, 0.5, 1.0}
    _, body, _ = await both_ways(client, monkeypatch, "query($id: ID!) { revision(id: $id) { env } }",
                                 {"id": fleet["revision"]})  # fmt: skip
    assert body["data"]["revision"]["env"]["TEXT"] == "grüße ☃"


async def records_of(db: Any) -> Records:
    """Argument values for generated queries: every id, project and name in the database, and a project with no
    deployments."""

    async def column(sql: str) -> list[Any]:
        return sorted(row[0] for row in await db.fetch_all(sql))

    return Records(
        ids={
            "Deployment": await column("SELECT id::text FROM deployments"),
            "Revision": await column("SELECT id::text FROM revisions"),
            "Route": await column("SELECT id::text FROM routes"),
        },
        projects=[*await column("SELECT DISTINCT project_id::text FROM deployments"), str(uuid.uuid4())],
        names=await column("SELECT name FROM deployments"),
        positions={
            "deployment": await column("SELECT seq FROM deployments"),
            "revision": await column("SELECT DISTINCT number FROM revisions"),
            "history": await column("SELECT seq FROM deployment_history"),
        },
    )


GENERATED_EXAMPLES = 300


def test_generated_reads_answer_exactly_what_execution_answers(database_url: str) -> None:
    """Queries drawn from the schema over the plain fields, each answered by the planner and by execution: the same
    status and body. The fleet is made once: the queries only read it. Derandomized, so CI runs the same examples
    every time (a failure reproduces; new examples come from changing the strategy)."""
    loop = asyncio.new_event_loop()
    db = open_database(database_url)
    loop.run_until_complete(db.connect())
    # Limits high enough that drawn queries reach the planner rather than the cost check.
    settings = Settings(database_url=database_url, insecure=True, max_cost=10**7, max_depth=100)
    app = create_app(settings, db)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://switchover")
    monkeypatch = pytest.MonkeyPatch()
    outcomes: Counter[str] = Counter()
    try:
        loop.run_until_complete(make_fleet(db))
        records = loop.run_until_complete(records_of(db))

        @hypothesis_settings(
            max_examples=GENERATED_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(example=read_queries(make_schema(), records))
        def compare(example: tuple[str, dict[str, Any]]) -> None:
            query, variables = example
            status, _, planned = loop.run_until_complete(both_ways(client, monkeypatch, query, variables))
            outcomes["planned" if planned else "refused" if status != 200 else "executed"] += 1

        compare()
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(db.disconnect())
        loop.close()
    # Most drawn queries must reach the planner, or the comparison says little about it.
    assert outcomes["planned"] >= sum(outcomes.values()) // 2, outcomes


def with_bindings(*bindables: SchemaBindable) -> Callable[..., GraphQLSchema]:
    """`make_schema`, then more bindables over the project's own: as if a field got a resolver of its own later."""

    def make(**options: Any) -> GraphQLSchema:
        schema = make_schema(**options)
        for bindable in bindables:
            bindable.bind_to_schema(schema)
        return schema

    return make


def shouted_names() -> SchemaBindable:
    deployment = ObjectType("Deployment")
    deployment.set_field("name", lambda record, info: record.name.upper())
    return deployment


def image_read_from_another_attribute() -> SchemaBindable:
    revision = ObjectType("Revision")
    revision.set_alias("image", "health_check_path")  # Ariadne's own kind of resolver, but not the field's attribute
    return revision


def route_revision_wrapped() -> SchemaBindable:
    async def same_revision(route: Any, info: GraphQLResolveInfo) -> Any:
        return await resolve_route_revision(route, info)

    route = ObjectType("Route")
    route.set_field("revision", same_revision)
    return route


def deployments_wrapped() -> SchemaBindable:
    async def same_deployments(root: Any, info: GraphQLResolveInfo, **arguments: Any) -> Any:
        return await resolve_deployments(root, info, **arguments)

    query = QueryType()
    query.set_field("deployments", same_deployments)
    return query


@pytest.mark.parametrize(
    ("bindable", "query", "expected"),
    [
        (shouted_names, "{ deployments { edges { node { name } } } }", lambda data: "FRESH" in str(data)),
        (image_read_from_another_attribute, "query($revision: ID!) { revision(id: $revision) { image } }",
         lambda data: data == {"revision": {"image": "/ok"}}),
        (route_revision_wrapped, "query($route: ID!) { route(id: $route) { revision { number } } }",
         lambda data: data == {"route": {"revision": {"number": 2}}}),
        (deployments_wrapped, "{ deployments { edges { node { name } } } }", lambda data: "fresh" in str(data)),
    ],
)  # fmt: skip
async def test_a_field_bound_to_a_resolver_of_its_own_is_left_to_execution(
    client: httpx.AsyncClient,
    settings: Settings,
    db: Any,
    fleet: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    bindable: Callable[[], SchemaBindable],
    query: str,
    expected: Callable[[dict[str, Any]], bool],
) -> None:
    variables = {name: fleet[name] for name in ("revision", "route") if f"${name}" in query}
    _, _, planned = await both_ways(client, monkeypatch, query, variables)
    assert planned, "with the project's own bindings, the planner answers this query"
    monkeypatch.setattr("switchover.app.make_schema", with_bindings(bindable()))
    app = create_app(settings, db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://switchover") as rebound:
        _, body, planned = await both_ways(rebound, monkeypatch, query, variables)
    assert not planned, "the planner answered a field whose resolver it does not know"
    assert expected(body["data"]), body


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


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        # A connection that selects no aggregate is still one object per connection, whether the page is empty,
        # has one item or many (it used to be null, or an error that sent the query to execution).
        ("query($p: ID) { deployments(projectId: $p) { __typename } }", {"p": str(uuid.uuid4())}),
        ("query($p: ID) { deployments(projectId: $p) { __typename } }", {"p": PROJECT}),
        ("{ deployments { __typename } }", {}),
        ("query($fresh: ID!) { deployment(id: $fresh) { revisions { __typename } history { __typename } } }", {}),
        ("query($id: ID!) { deployment(id: $id) { revisions { __typename } history { __typename } } }", {}),
        ("query($p: ID) { deployments(projectId: $p) { pageInfo { __typename } } }", {"p": str(uuid.uuid4())}),
        ("{ deployments { pageInfo { __typename } } }", {}),
        ("query($id: ID!) { deployment(id: $id) { revisions { pageInfo { __typename } } } }", {}),
        ("query($fresh: ID!) { deployment(id: $fresh) { revisions { pageInfo { __typename } } } }", {}),
        ("{ deployments { edges @skip(if: true) { cursor } } }", {}),
        ("query($id: ID!) { deployment(id: $id) { history { edges @skip(if: true) { cursor } } } }", {}),
        ("query($fresh: ID!) { deployment(id: $fresh) { revisions { edges @include(if: false) { cursor } } } }", {}),
        ("{ deployments { pageInfo { hasNextPage @skip(if: true) } } }", {}),
    ],
)  # fmt: skip
async def test_a_connection_is_an_object_whatever_it_selects(
    client: httpx.AsyncClient,
    fleet: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    query: str,
    variables: dict[str, Any],
) -> None:
    ids = {"id": fleet["awaiting"], "fresh": fleet["fresh"]}
    used = {name: value for name, value in ids.items() if f"${name}" in query}
    status, body, planned = await both_ways(client, monkeypatch, query, {**used, **variables})
    assert status == 200 and "errors" not in body, body
    assert planned, f"the planner left this plain read to execution: {query}"


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
    # A record of another project answers exactly as one that does not exist.
    others = {"deployment": fleet["serving"], "route": fleet["route"], "revision": fleet["first_revision"]}
    for root, id_ in others.items():
        query = f"query($id: ID!) {{ {root}(id: $id) {{ id }} }}"
        _, body, _ = await both_ways(secure, monkeypatch, query, {"id": id_}, **viewer)
        assert body == {"data": {root: None}}, body
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
