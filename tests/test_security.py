"""Authentication, authorization by project and role, and request limits."""

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from store import deployments, reads
from store.models import DeploymentStrategyType, Strategy
from switchover.app import create_app
from switchover.settings import Settings
from tests.state import snapshot
from tests.tokens import SECRET, bearer

MINE, THEIRS = str(uuid.uuid4()), str(uuid.uuid4())


@pytest.fixture
async def secure(db: Any, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=database_url, jwt_secret=SECRET, max_depth=8, max_cost=300), db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://switchover") as c:
        yield c


@pytest.fixture
async def two_projects(db: Any) -> dict[str, Any]:
    """One deployment with a revision in each project."""
    made = {}
    for project in (MINE, THEIRS):
        d = await deployments.create_deployment(
            db,
            project_id=project,
            name="model",
            replicas=1,
            strategy=Strategy(type=DeploymentStrategyType.BLUE_GREEN),
            actor="setup",
        )
        r = await deployments.add_revision(
            db, deployment_id=d.id, image="m:1", env=None, health_check_path=None, actor="setup"
        )
        made[project] = {"deployment": d.id, "revision": r.id}
    return made


async def post(client: httpx.AsyncClient, query: str, headers: dict[str, str] | None = None, **variables: Any) -> Any:
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers or {})
    return response.json()


def code(body: dict[str, Any]) -> str:
    return body["errors"][0]["extensions"]["code"]


READ = "query($d: ID!) { deployment(id: $d) { id name } }"
ADD = 'mutation($d: ID!) { addRevision(input: {deploymentId: $d, image: "m:2"}) { revision { number } } }'
VIEWER = {"sub": "val", "roles": ["viewer"], "projects": [MINE]}
OPERATOR = {"sub": "otto", "roles": ["operator"], "projects": [MINE]}


def raw(claims: dict[str, Any], secret: str = SECRET) -> dict[str, str]:
    return {"authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer"},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"authorization": "Bearer not.a.token"},
        raw({"sub": "x", "roles": ["admin"], "exp": int(time.time()) - 10}),
        raw({"sub": "x", "roles": ["admin"]}),
        raw(
            {"sub": "x", "roles": ["admin"], "exp": int(time.time()) + 60},
            secret="another-secret-that-is-long-enough-for-hs256",
        ),
        raw({"sub": "x", "roles": ["root"], "projects": [], "exp": int(time.time()) + 60}),
        raw({"roles": ["admin"], "exp": int(time.time()) + 60}),
    ],
    ids=["none", "empty", "basic", "malformed", "expired", "no-exp", "wrong-secret", "unknown-role", "no-sub"],
)
async def test_requests_without_a_valid_token_are_unauthenticated_and_change_nothing(
    secure: httpx.AsyncClient, db: Any, two_projects: dict[str, Any], headers: dict[str, str]
) -> None:
    before = await snapshot(db)

    read = await post(secure, READ, headers, d=two_projects[MINE]["deployment"])
    write = await post(secure, ADD, headers, d=two_projects[MINE]["deployment"])

    assert code(read) == "UNAUTHENTICATED"
    assert code(write) == "UNAUTHENTICATED"
    assert await snapshot(db) == before


async def test_composition_needs_no_token(secure: httpx.AsyncClient) -> None:
    body = await post(secure, "{ _service { sdl } __typename }")
    assert "@key" in body["data"]["_service"]["sdl"]


async def test_a_viewer_reads_its_projects_only_and_changes_nothing(
    secure: httpx.AsyncClient, db: Any, two_projects: dict[str, Any]
) -> None:
    viewer = bearer(**VIEWER)
    before = await snapshot(db)

    assert (await post(secure, READ, viewer, d=two_projects[MINE]["deployment"]))["data"]["deployment"][
        "name"
    ] == "model"
    assert await post(secure, READ, viewer, d=two_projects[THEIRS]["deployment"]) == {"data": {"deployment": None}}
    assert code(await post(secure, ADD, viewer, d=two_projects[MINE]["deployment"])) == "FORBIDDEN"
    listed = await post(secure, "{ deployments { edges { node { projectId } } } }", viewer)
    assert [e["node"]["projectId"] for e in listed["data"]["deployments"]["edges"]] == [MINE]
    assert (
        code(await post(secure, "query($p: ID) { deployments(projectId: $p) { edges { cursor } } }", viewer, p=THEIRS))
        == "FORBIDDEN"
    )
    assert await snapshot(db) == before


async def test_an_operator_changes_its_projects_only_and_history_names_it(
    secure: httpx.AsyncClient, db: Any, two_projects: dict[str, Any]
) -> None:
    operator = bearer(**OPERATOR)

    added = await post(secure, ADD, operator, d=two_projects[MINE]["deployment"])
    refused = await post(secure, ADD, operator, d=two_projects[THEIRS]["deployment"])
    create = await post(
        secure,
        'mutation($p: ID!) { createDeployment(input: {projectId: $p, name: "x", replicas: 1, '
        "strategy: {type: BLUE_GREEN}}) { deployment { id } } }",
        operator,
        p=THEIRS,
    )

    assert added["data"]["addRevision"]["revision"]["number"] == 2
    assert code(refused) == "NOT_FOUND"
    assert refused["errors"][0]["message"] == f"deployment {two_projects[THEIRS]['deployment']} does not exist"
    assert code(create) == "FORBIDDEN"
    page = (await reads.history_pages(db, [two_projects[MINE]["deployment"]], first=1))[
        two_projects[MINE]["deployment"]
    ]
    assert page.items[0][1].actor == "otto"


async def test_every_path_to_another_projects_records_is_checked(
    secure: httpx.AsyncClient, two_projects: dict[str, Any]
) -> None:
    stranger = bearer(sub="sam", roles=["operator"], projects=[MINE])
    theirs = two_projects[THEIRS]

    revision = await post(secure, "query($r: ID!) { revision(id: $r) { image } }", stranger, r=theirs["revision"])
    entities = await post(
        secure,
        "query($reps: [_Any!]!) { _entities(representations: $reps) { ... on Deployment { name } "
        "... on Revision { image } ... on Project { deployments { edges { cursor } } } } }",
        stranger,
        reps=[
            {"__typename": "Deployment", "id": theirs["deployment"]},
            {"__typename": "Revision", "id": theirs["revision"]},
            {"__typename": "Project", "id": THEIRS},
            {"__typename": "Deployment", "id": two_projects[MINE]["deployment"]},
        ],
    )

    # Records of another project answer as records that do not exist; only the project the caller named is refused.
    assert revision == {"data": {"revision": None}}
    assert entities["data"]["_entities"] == [None, None, None, {"name": "model"}]
    assert [(e["extensions"]["code"], e["path"]) for e in entities["errors"]] == [
        ("FORBIDDEN", ["_entities", 2, "deployments"])
    ]


async def test_an_admin_reads_and_changes_everything(secure: httpx.AsyncClient, two_projects: dict[str, Any]) -> None:
    admin = bearer(sub="ada", roles=["admin"])
    assert (await post(secure, ADD, admin, d=two_projects[THEIRS]["deployment"]))["data"]["addRevision"]
    listed = await post(secure, "{ deployments { edges { node { projectId } } } }", admin)
    assert len(listed["data"]["deployments"]["edges"]) == 2


async def test_a_query_too_deep_is_refused(secure: httpx.AsyncClient, two_projects: dict[str, Any]) -> None:
    deep = (
        "query($d: ID!) { deployment(id: $d) { revisions { edges { node { deployment { revisions { edges { node "
        "{ deployment { name } } } } } } } } } }"
    )
    body = await post(secure, deep, bearer(roles=["admin"]), d=two_projects[MINE]["deployment"])
    assert code(body) == "GRAPHQL_VALIDATION_FAILED"
    assert "levels deep" in body["errors"][0]["message"]


async def test_a_query_too_costly_is_refused(secure: httpx.AsyncClient) -> None:
    costly = "{ deployments(first: 100) { edges { node { revisions(first: 100) { edges { node { id } } } } } } }"
    body = await post(secure, costly, bearer(roles=["admin"]))
    assert code(body) == "GRAPHQL_VALIDATION_FAILED"
    assert "maximum cost" in body["errors"][0]["message"]


async def test_too_many_entity_representations_are_refused(secure: httpx.AsyncClient) -> None:
    reps = [{"__typename": "Deployment", "id": str(uuid.uuid4())} for _ in range(101)]
    entities = "query($r: [_Any!]!) { _entities(representations: $r) { __typename } }"
    body = await post(secure, entities, bearer(roles=["admin"]), r=reps)
    assert code(body) == "BAD_USER_INPUT"


async def test_a_huge_body_is_refused_before_it_is_parsed(secure: httpx.AsyncClient) -> None:
    response = await secure.post("/graphql", content=b'{"query": "' + b" " * 1_100_000 + b'{ __typename }"}',
                                 headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_introspection_is_off_by_default_but_service_keeps_working(db: Any, database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, insecure=True), db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as c:
        introspection = await post(c, "{ __schema { types { name } } }")
        service = await post(c, "{ _service { sdl } }")
    assert code(introspection) == "GRAPHQL_VALIDATION_FAILED"
    assert service["data"]["_service"]["sdl"]


def test_the_server_refuses_to_start_without_a_secret_unless_insecure(database_url: str) -> None:
    with pytest.raises(SystemExit, match="--insecure"):
        create_app(Settings(database_url=database_url), None)  # type: ignore[arg-type]


async def test_metrics_count_requests(client: httpx.AsyncClient) -> None:
    await client.post("/graphql", json={"query": "{ __typename }"})
    text = (await client.get("/metrics")).text
    assert 'switchover_graphql_requests_total{status="200"}' in text


@pytest.mark.parametrize(
    "query",
    [
        READ,
        "query($d: ID!) { revision(id: $d) { image } }",
        "query($d: ID!) { _entities(representations: [{__typename: \"Deployment\", id: $d}]) { ... on Deployment "
        "{ name } } }",
        "query($d: ID!) { _entities(representations: [{__typename: \"Revision\", id: $d}]) { ... on Revision "
        "{ image } } }",
        ADD,
        "mutation($d: ID!) { promoteDeployment(input: {deploymentId: $d}) { dryRun } }",
        "mutation($d: ID!) { rollbackDeployment(input: {deploymentId: $d}) { deployment { id } } }",
        "mutation($d: ID!) { scaleDeployment(input: {deploymentId: $d, replicas: 2}) { deployment { id } } }",
        "mutation($d: ID!) { destroyDeployment(input: {deploymentId: $d}) { deployment { id } } }",
        # Bad input as well: refused at the same point as for an unknown id (the store does not find the record).
        'mutation($d: ID!) { addRevision(input: {deploymentId: $d, image: "not an image"}) { revision { number } } }',
        "mutation($d: ID!) { scaleDeployment(input: {deploymentId: $d, replicas: 0}) { deployment { id } } }",
        "mutation($d: ID!) { rollbackDeployment(input: {deploymentId: $d, reason: \"%s\"}) { deployment { id } } }"
        % ("x" * 1001),
        'mutation($d: ID!) { deployRevision(input: {deploymentId: $d, revisionId: "nope"}) { deployment { id } } }',
        'mutation($d: ID!) { promoteDeployment(input: {deploymentId: $d, expectedRevisionId: "nope"}) { dryRun } }',
    ],
    ids=["deployment", "revision", "entity-deployment", "entity-revision", "add", "promote", "rollback", "scale",
         "destroy", "add-bad-image", "scale-to-zero", "rollback-long-reason", "deploy-bad-revision",
         "promote-bad-expected"],
)  # fmt: skip
async def test_a_record_of_another_project_answers_exactly_as_one_that_does_not_exist(
    secure: httpx.AsyncClient, db: Any, two_projects: dict[str, Any], query: str
) -> None:
    operator = bearer(**OPERATOR)
    reads_a_revision = "revision(id" in query or '"Revision"' in query
    theirs = two_projects[THEIRS]["revision" if reads_a_revision else "deployment"]
    missing = str(uuid.uuid4())
    before = await snapshot(db)

    answered = await post(secure, query, operator, d=theirs)
    nothing = await post(secure, query, operator, d=missing)

    assert json.dumps(answered).replace(theirs, "ID") == json.dumps(nothing).replace(missing, "ID")
    assert THEIRS not in json.dumps(answered)
    assert await snapshot(db) == before


async def test_another_projects_revision_is_deployed_as_a_missing_one(
    secure: httpx.AsyncClient, db: Any, two_projects: dict[str, Any]
) -> None:
    deploy = "mutation($d: ID!, $r: ID!) { deployRevision(input: {deploymentId: $d, revisionId: $r}) { __typename } }"
    operator, theirs, missing = bearer(**OPERATOR), two_projects[THEIRS]["revision"], str(uuid.uuid4())
    before = await snapshot(db)

    answered = await post(secure, deploy, operator, d=two_projects[MINE]["deployment"], r=theirs)
    nothing = await post(secure, deploy, operator, d=two_projects[MINE]["deployment"], r=missing)

    assert code(answered) == "NOT_FOUND"
    assert json.dumps(answered).replace(theirs, "ID") == json.dumps(nothing).replace(missing, "ID")
    assert await snapshot(db) == before


async def test_a_token_without_a_role_reads_nothing_of_the_projects_it_lists(
    secure: httpx.AsyncClient, two_projects: dict[str, Any]
) -> None:
    roleless = raw({"sub": "nora", "roles": [], "projects": [MINE], "exp": int(time.time()) + 60})
    helper = bearer(sub="nora", projects=[MINE])["authorization"].removeprefix("Bearer ")
    assert jwt.decode(helper, SECRET, algorithms=["HS256"])["roles"] == []  # the test helper makes no silent admin

    listed = await post(secure, "{ deployments { edges { node { name } } } }", roleless)
    read = await post(secure, READ, roleless, d=two_projects[MINE]["deployment"])

    assert listed == {"data": {"deployments": {"edges": []}}}
    assert read == {"data": {"deployment": None}}


@pytest.mark.parametrize("extra", ["", ', endpointUrl: "ftp://not-http"'])
async def test_another_projects_route_answers_exactly_as_one_that_does_not_exist(
    secure: httpx.AsyncClient, db: Any, extra: str
) -> None:
    from tests.scenario import Scenario

    theirs = Scenario(db)
    await theirs.given_deployment(replicas=1)
    await theirs.deploy()
    await theirs.tick()
    [route] = await theirs.routes()
    report = (
        "mutation($d: ID!) { reportRouteHealth(input: {routeId: $d, status: HEALTHY" + extra + "}) { __typename } }"
    )
    missing = str(uuid.uuid4())
    before = await snapshot(db)

    answered = await post(secure, report, bearer(**OPERATOR), d=route.id)
    nothing = await post(secure, report, bearer(**OPERATOR), d=missing)

    assert json.dumps(answered).replace(route.id, "ID") == json.dumps(nothing).replace(missing, "ID")
    assert await snapshot(db) == before
