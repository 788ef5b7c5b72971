"""Creating and reading deployments and revisions over HTTP, with every refusal leaving the store untouched."""

import uuid
from typing import Any

import pytest

from tests.graphql import ADD_REVISION, CREATE, data, deployment_input, error_code, gql
from tests.state import snapshot

PROJECT = str(uuid.uuid4())


async def create(client: Any, **kwargs: Any) -> dict[str, Any]:
    result = await data(client, CREATE, {"input": deployment_input(PROJECT, **kwargs)})
    return result["createDeployment"]["deployment"]


async def test_a_created_deployment_reads_back_with_the_spec_defaults(client: Any) -> None:
    created = await create(client, name="fraud-model", replicas=3)

    assert created["lifecycle"] == "PENDING"
    assert created["subStep"] is None
    assert created["currentRevision"] is None and created["deployingRevision"] is None
    assert created["nextActionAt"] is None
    assert created["strategy"] == {
        "type": "BLUE_GREEN",
        "provisioningTimeoutSeconds": 600,
        "maxRetries": 5,
        "blueGreen": {
            "autoPromote": False,
            "promoteDelaySeconds": 0,
            "promotionTimeoutSeconds": None,
            "scaleDownDelaySeconds": 30,
        },
        "rollingUpdate": None,
    }
    read = await data(
        client, "query($id: ID!) { deployment(id: $id) { id name projectId replicas } }", {"id": created["id"]}
    )
    assert read["deployment"] == {"id": created["id"], "name": "fraud-model", "projectId": PROJECT, "replicas": 3}


async def test_a_rolling_deployment_keeps_its_surge_and_unavailable(client: Any) -> None:
    created = await create(
        client,
        type="ROLLING",
        rollingUpdate={"maxSurge": {"count": 2}, "maxUnavailable": {"percent": 0.25}},
        provisioningTimeoutSeconds=120,
        maxRetries=0,
    )
    assert created["strategy"]["type"] == "ROLLING"
    assert created["strategy"]["blueGreen"] is None
    assert created["strategy"]["rollingUpdate"] == {
        "maxSurge": {"count": 2, "percent": None},
        "maxUnavailable": {"count": None, "percent": 0.25},
    }
    assert created["strategy"]["provisioningTimeoutSeconds"] == 120
    assert created["strategy"]["maxRetries"] == 0


async def test_creating_records_history_with_the_actor(client: Any) -> None:
    created = await create(client)
    result = await data(
        client,
        "query($id: ID!) { deployment(id: $id) { history { edges { node { "
        "phase toLifecycle result actor message attempts } } } } }",
        {"id": created["id"]},
    )
    [entry] = [e["node"] for e in result["deployment"]["history"]["edges"]]
    assert entry["phase"] == "create"
    assert entry["toLifecycle"] == "PENDING"
    assert entry["result"] == "SUCCESS"
    assert entry["actor"] == "anonymous"
    assert entry["attempts"] == 1
    assert "sentiment" in entry["message"]


BAD_CREATE_INPUTS = [
    ("empty name", {"name": ""}, "BAD_USER_INPUT"),
    ("upper case name", {"name": "Sentiment"}, "BAD_USER_INPUT"),
    ("name starting with a dash", {"name": "-model"}, "BAD_USER_INPUT"),
    ("name ending with a dash", {"name": "model-"}, "BAD_USER_INPUT"),
    ("name with an underscore", {"name": "my_model"}, "BAD_USER_INPUT"),
    ("name of 64 characters", {"name": "a" * 64}, "BAD_USER_INPUT"),
    ("zero replicas", {"replicas": 0}, "BAD_USER_INPUT"),
    ("negative replicas", {"replicas": -3}, "BAD_USER_INPUT"),
    ("too many replicas", {"replicas": 1001}, "BAD_USER_INPUT"),
    ("replicas beyond 32 bits", {"replicas": 2**40}, "BAD_USER_INPUT"),
    ("project that is not a UUID", {"projectId": "project-1"}, "BAD_USER_INPUT"),
    ("negative promote delay", {"blueGreen": {"promoteDelaySeconds": -1}}, "BAD_USER_INPUT"),
    ("zero promotion timeout", {"blueGreen": {"promotionTimeoutSeconds": 0}}, "BAD_USER_INPUT"),
    ("negative scale-down delay", {"blueGreen": {"scaleDownDelaySeconds": -5}}, "BAD_USER_INPUT"),
    ("zero provisioning timeout", {"provisioningTimeoutSeconds": 0}, "BAD_USER_INPUT"),
    ("negative max retries", {"maxRetries": -1}, "BAD_USER_INPUT"),
    ("rolling spec on blue-green", {"rollingUpdate": {"maxSurge": {"count": 1}}}, "BAD_USER_INPUT"),
    ("blue-green spec on rolling", {"type": "ROLLING", "blueGreen": {"autoPromote": True}}, "BAD_USER_INPUT"),
    (
        "surge and unavailable both zero",
        {"type": "ROLLING", "rollingUpdate": {"maxSurge": {"count": 0}, "maxUnavailable": {"percent": 0}}},
        "BAD_USER_INPUT",
    ),
    ("surge above 100 %", {"type": "ROLLING", "rollingUpdate": {"maxSurge": {"percent": 1.5}}}, "BAD_USER_INPUT"),
    ("negative surge", {"type": "ROLLING", "rollingUpdate": {"maxSurge": {"count": -1}}}, "BAD_USER_INPUT"),
    (
        "both count and percent",
        {"type": "ROLLING", "rollingUpdate": {"maxSurge": {"count": 1, "percent": 0.5}}},
        "BAD_USER_INPUT",
    ),
    ("neither count nor percent", {"type": "ROLLING", "rollingUpdate": {"maxSurge": {}}}, "BAD_USER_INPUT"),
    ("unknown strategy type", {"type": "CANARY"}, "BAD_USER_INPUT"),
]


def _input(overrides: dict[str, Any]) -> dict[str, Any]:
    top = {k: overrides[k] for k in ("name", "replicas", "projectId") if k in overrides}
    strategy = {k: v for k, v in overrides.items() if k not in top}
    value = deployment_input(PROJECT, **strategy)
    value.update(top)
    return value


@pytest.mark.parametrize(("case", "overrides", "code"), BAD_CREATE_INPUTS, ids=[c[0] for c in BAD_CREATE_INPUTS])
async def test_a_bad_create_is_refused_and_writes_nothing(
    client: Any, db: Any, case: str, overrides: dict[str, Any], code: str
) -> None:
    await create(client, name="existing")
    before = await snapshot(db)

    body = await gql(client, CREATE, {"input": _input(overrides)})

    assert error_code(body) == code, body
    assert body["errors"][0]["message"]
    assert "Traceback" not in str(body)
    assert await snapshot(db) == before


async def test_a_small_percentage_of_surge_rounds_up_to_one_route(client: Any) -> None:
    created = await create(
        client,
        replicas=4,
        type="ROLLING",
        rollingUpdate={"maxSurge": {"percent": 0.01}, "maxUnavailable": {"count": 0}},
    )
    assert created["strategy"]["rollingUpdate"]["maxSurge"] == {"count": None, "percent": 0.01}


async def test_a_name_is_unique_per_project_among_live_deployments(client: Any, db: Any) -> None:
    await create(client, name="ranker")
    before = await snapshot(db)

    body = await gql(client, CREATE, {"input": deployment_input(PROJECT, name="ranker")})

    assert error_code(body) == "CONFLICT"
    assert "ranker" in body["errors"][0]["message"]
    assert await snapshot(db) == before
    other_project = await data(client, CREATE, {"input": deployment_input(str(uuid.uuid4()), name="ranker")})
    assert other_project["createDeployment"]["deployment"]["name"] == "ranker"


async def test_revisions_are_numbered_per_deployment(client: Any) -> None:
    first = await create(client, name="first")
    second = await create(client, name="second")

    numbers = []
    for deployment, image in [(first, "model:1"), (first, "model:2"), (second, "other:1")]:
        result = await data(client, ADD_REVISION, {"input": {"deploymentId": deployment["id"], "image": image}})
        numbers.append(result["addRevision"]["revision"]["number"])

    assert numbers == [1, 2, 1]


async def test_a_revision_reads_back_with_env_and_health_check(client: Any) -> None:
    deployment = await create(client)
    added = await data(
        client,
        ADD_REVISION,
        {
            "input": {
                "deploymentId": deployment["id"],
                "image": "registry.local/sentiment:2.1",
                "env": {"MODEL_THREADS": "4", "LOG_LEVEL": "debug"},
                "healthCheckPath": "/healthz",
            }
        },
    )
    revision = added["addRevision"]["revision"]
    read = await data(
        client,
        "query($id: ID!) { revision(id: $id) { id number image env healthCheckPath deployment { id } } }",
        {"id": revision["id"]},
    )
    assert read["revision"] == {
        "id": revision["id"],
        "number": 1,
        "image": "registry.local/sentiment:2.1",
        "env": {"MODEL_THREADS": "4", "LOG_LEVEL": "debug"},
        "healthCheckPath": "/healthz",
        "deployment": {"id": deployment["id"]},
    }


async def test_an_inline_env_literal_is_accepted(client: Any) -> None:
    deployment = await create(client)
    query = 'mutation { addRevision(input: {deploymentId: "ID", image: "m:1", env: {A: "1"}}) { revision { env } } }'
    query = query.replace("ID", deployment["id"])
    assert (await data(client, query))["addRevision"]["revision"]["env"] == {"A": "1"}


BAD_REVISION_INPUTS = [
    ("unknown deployment", {"deploymentId": str(uuid.uuid4())}, "NOT_FOUND"),
    ("deployment id that is not a UUID", {"deploymentId": "nope"}, "BAD_USER_INPUT"),
    ("empty image", {"image": ""}, "BAD_USER_INPUT"),
    ("image with spaces", {"image": "my model"}, "BAD_USER_INPUT"),
    ("huge image", {"image": "m" * 513}, "BAD_USER_INPUT"),
    ("env that is a list", {"env": ["A=1"]}, "BAD_USER_INPUT"),
    ("env with a number value", {"env": {"A": 1}}, "BAD_USER_INPUT"),
    ("env with a bad name", {"env": {"1A": "x"}}, "BAD_USER_INPUT"),
    ("relative health check path", {"healthCheckPath": "health"}, "BAD_USER_INPUT"),
    ("health check path with spaces", {"healthCheckPath": "/he alth"}, "BAD_USER_INPUT"),
]


@pytest.mark.parametrize(("case", "overrides", "code"), BAD_REVISION_INPUTS, ids=[c[0] for c in BAD_REVISION_INPUTS])
async def test_a_bad_revision_is_refused_and_writes_nothing(
    client: Any, db: Any, case: str, overrides: dict[str, Any], code: str
) -> None:
    deployment = await create(client)
    before = await snapshot(db)

    body = await gql(client, ADD_REVISION, {"input": {"deploymentId": deployment["id"], "image": "m:1", **overrides}})

    assert error_code(body) == code, body
    assert await snapshot(db) == before


async def test_unknown_and_malformed_ids_read_as_null(client: Any) -> None:
    result = await data(
        client,
        "query($a: ID!, $b: ID!) { deployment(id: $a) { id } revision(id: $b) { id } route(id: $a) { id } "
        "bad: deployment(id: $b) { id } }",
        {"a": str(uuid.uuid4()), "b": "not-a-uuid"},
    )
    assert result == {"deployment": None, "revision": None, "route": None, "bad": None}


async def test_an_id_in_upper_case_finds_the_same_deployment(client: Any) -> None:
    created = await create(client)
    result = await data(client, "query($id: ID!) { deployment(id: $id) { id } }", {"id": created["id"].upper()})
    assert result["deployment"] == {"id": created["id"]}
