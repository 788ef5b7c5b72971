"""Hostile input to every mutation: always a GraphQL error with a code, never an unhandled error or a 5xx, and the
store's invariants hold afterwards."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import governance, webhooks
from store.database import open_database
from switchover.app import create_app
from switchover.settings import Settings
from tests import invariants
from tests.scenario import Scenario

CODES = {"BAD_USER_INPUT", "NOT_FOUND", "INVALID_STATE", "CONFLICT", "GRAPHQL_VALIDATION_FAILED"}

hostile_int = st.one_of(
    st.none(),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.sampled_from([0, -1, 2**31 - 1, -(2**31), 2**31, 2**63, 10**30]),
)
hostile_str = st.one_of(
    st.none(),
    st.text(max_size=80),
    st.text(min_size=500, max_size=5000),
    st.sampled_from(["", " ", "\x00", "a\x00b", "ü" * 64, "🙂" * 10, "-", "a-", "Robert'); DROP TABLE deployments;--"]),
)
BASE_IDS = st.one_of(
    st.none(), st.text(max_size=40), st.just(str(uuid.uuid4())), st.just("00000000-0000-0000-0000-000000000000")
)
hostile_float = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([-0.0, 1.5, -1]))
# Never a freeze window in force, so that the rollout the examples act on can always be deployed again: a plausible
# window starts at least an hour ahead (and may last too long); one starting in the past ends past or lasts over 30
# days (refused either way).
NOW = datetime.now(UTC)
hostile_time = st.one_of(
    hostile_str,
    st.sampled_from([(NOW + timedelta(days=d)).isoformat() for d in (-400, -31, 1, 2, 29, 40, 400)]),
    st.sampled_from(["1970-01-01T00:00:00+00:00", "9999-12-31T23:59:59+14:00", "2030-02-30T00:00:00Z", "2030-01-01"]),
)
plausible_window = st.tuples(st.integers(1, 300), st.integers(-1, 24 * 31)).map(
    lambda hours: ((NOW + timedelta(hours=hours[0])).isoformat(), (NOW + timedelta(hours=sum(hours))).isoformat())
)
window_times = st.one_of(plausible_window, st.tuples(hostile_time, hostile_time))
# Nothing that leaves the machine: a URL accepted here is loopback, which the scheduler's passes refuse to post to.
hostile_url = st.one_of(
    hostile_str,
    st.just("http://localhost:1/fuzz"),
    st.sampled_from(["http://169.254.169.254/latest", "http://[fe80::1]/", "ftp://h/a",
                     "http://", "http://[::1", "http://h:99999/", "javascript:alert(1)", "http://" + "a" * 3000]),
)  # fmt: skip
WEBHOOK_SECRET = "a-fuzzed-webhook-secret"


def mutations(real_ids: list[str]) -> dict[str, tuple[str, Any]]:
    """Each mutation's input type and a strategy for hostile values of it; ids are often real ones."""
    hostile_id = st.one_of(BASE_IDS, st.sampled_from(real_ids), st.sampled_from(real_ids))
    return {
        "createDeployment": (
            "CreateDeploymentInput",
            st.fixed_dictionaries(
                {
                    "projectId": hostile_id,
                    "name": hostile_str,
                    "replicas": hostile_int,
                    "strategy": st.one_of(
                        st.none(),
                        st.fixed_dictionaries(
                            {
                                "type": st.sampled_from(["BLUE_GREEN", "ROLLING", "CANARY", None]),
                                "blueGreen": st.one_of(
                                    st.none(),
                                    st.fixed_dictionaries(
                                        {
                                            "promoteDelaySeconds": hostile_int,
                                            "promotionTimeoutSeconds": hostile_int,
                                            "scaleDownDelaySeconds": hostile_int,
                                        }
                                    ),
                                ),
                                "rollingUpdate": st.one_of(
                                    st.none(),
                                    st.fixed_dictionaries(
                                        {
                                            "maxSurge": st.fixed_dictionaries(
                                                {"count": hostile_int, "percent": hostile_float}
                                            ),
                                            "maxUnavailable": st.fixed_dictionaries({"percent": hostile_float}),
                                        }
                                    ),
                                ),
                                "provisioningTimeoutSeconds": hostile_int,
                                "maxRetries": hostile_int,
                            }
                        ),
                    ),
                }
            ),
        ),
        "addRevision": (
            "AddRevisionInput",
            st.fixed_dictionaries(
                {
                    "deploymentId": hostile_id,
                    "image": hostile_str,
                    "env": st.one_of(
                        st.none(),
                        st.dictionaries(
                            st.text(max_size=20), st.one_of(st.text(max_size=50), st.integers()), max_size=5
                        ),
                        st.lists(st.integers(), max_size=3),
                    ),
                    "healthCheckPath": hostile_str,
                }
            ),
        ),
        "deployRevision": (
            "DeployRevisionInput",
            st.fixed_dictionaries({"deploymentId": hostile_id, "revisionId": hostile_id}),
        ),
        "promoteDeployment": (
            "PromoteDeploymentInput",
            st.fixed_dictionaries(
                {
                    "deploymentId": hostile_id,
                    "expectedRevisionId": hostile_id,
                    "dryRun": st.one_of(st.none(), st.booleans()),
                }
            ),
        ),
        "rollbackDeployment": (
            "RollbackDeploymentInput",
            st.fixed_dictionaries({"deploymentId": hostile_id, "reason": hostile_str}),
        ),
        "scaleDeployment": (
            "ScaleDeploymentInput",
            st.fixed_dictionaries({"deploymentId": hostile_id, "replicas": hostile_int}),
        ),
        "destroyDeployment": ("DestroyDeploymentInput", st.fixed_dictionaries({"deploymentId": hostile_id})),
        "reportRouteHealth": (
            "ReportRouteHealthInput",
            st.fixed_dictionaries(
                {
                    "routeId": hostile_id,
                    "status": st.sampled_from(["HEALTHY", "TERMINATING", "TERMINATED", "nope", None]),
                    "endpointUrl": st.one_of(hostile_str, st.just("http://[::1"), st.just("http://h:99999")),
                }
            ),
        ),
        "approvePromotion": (
            "ApprovePromotionInput",
            st.fixed_dictionaries({"deploymentId": hostile_id, "revisionId": hostile_id, "comment": hostile_str}),
        ),
        "createFreezeWindow": (
            "CreateFreezeWindowInput",
            st.tuples(hostile_id, window_times, st.one_of(hostile_str, st.just("fuzz"))).map(
                lambda v: {"projectId": v[0], "startsAt": v[1][0], "endsAt": v[1][1], "reason": v[2]}
            ),
        ),
        "deleteFreezeWindow": ("DeleteFreezeWindowInput", st.fixed_dictionaries({"id": hostile_id})),
        "createWebhook": (
            "CreateWebhookInput",
            st.fixed_dictionaries(
                {
                    "projectId": hostile_id,
                    "url": hostile_url,
                    "events": st.one_of(
                        st.sampled_from([None, [], ["deploy", "promote"]]),
                        st.lists(
                            st.one_of(st.sampled_from(["deploy", "promote", "nope", ""]), hostile_str), max_size=70
                        ),
                    ),
                    "secret": st.one_of(hostile_str, st.just(WEBHOOK_SECRET)),
                }
            ),
        ),
        "deleteWebhook": ("DeleteWebhookInput", st.fixed_dictionaries({"id": hostile_id})),
        "redeliverWebhook": ("RedeliverWebhookInput", st.fixed_dictionaries({"deliveryId": hostile_id})),
    }


async def send(client: httpx.AsyncClient, mutation: str, input_type: str, value: Any) -> None:
    query = f"mutation($input: {input_type}!) {{ {mutation}(input: $input) {{ __typename }} }}"
    response = await client.post("/graphql", json={"query": query, "variables": {"input": value}})
    assert response.status_code in (200, 400), response.text
    body = response.json()
    for error in body.get("errors", []):
        assert error["extensions"]["code"] in CODES, (mutation, value, error)
        assert "Traceback" not in error["message"]


MUTATION_NAMES = list(mutations(["x"]))


async def governance_ids(scenario: Scenario) -> list[str]:
    """Real ids for the governance mutations to aim at, around the scenario's deployment (before its deploy): a
    freeze window ahead, a live webhook (loopback: its deliveries fail at once, refused by the scheduler, and stay
    PENDING) with one of its deliveries, and a deleted webhook with one of its dead-lettered ones."""
    db, project = scenario.db, scenario.project_id
    ahead = datetime.now(UTC) + timedelta(days=10)
    window = await governance.create_freeze_window(
        db, project_id=project, starts_at=ahead, ends_at=ahead + timedelta(days=1), reason="fuzz", actor="alice"
    )
    live, gone = [
        await webhooks.create(
            db, project_id=project, url=f"http://localhost:1/{name}", events=None, secret=WEBHOOK_SECRET, actor="alice"
        )
        for name in ("live", "gone")
    ]
    await scenario.deploy()
    await webhooks.delete(db, gone.id)
    deliveries = [(await webhooks.deliveries(db, w.id, first=1)).items[0][1].id for w in (live, gone)]
    return [project, window.id, live.id, gone.id, *deliveries]


async def back_to_a_rollout(scenario: Scenario) -> None:
    """After an example succeeded, put the target deployment back in flight, so that the next example reaches as
    deep into the operation as this one did (a destroyed deployment stays destroyed)."""
    await scenario.tick()
    state = await scenario.state()
    if state in ("READY", "PENDING"):
        await scenario.deploy()
        await scenario.tick()


@pytest.mark.parametrize("mutation", MUTATION_NAMES)
def test_hostile_inputs_are_refused_cleanly(database_url: str, mutation: str) -> None:
    loop = asyncio.new_event_loop()
    db = open_database(database_url)
    loop.run_until_complete(db.connect())
    # The API may accept a loopback URL (a webhook can be created); the scheduler passes here refuse to post to it.
    app = create_app(Settings(database_url=database_url, insecure=True, allow_loopback_urls=True), db)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://switchover")
    try:
        scenario = Scenario(db)
        loop.run_until_complete(scenario.given_deployment(replicas=2))
        governed = loop.run_until_complete(governance_ids(scenario))  # deploys
        loop.run_until_complete(scenario.tick())
        routes = loop.run_until_complete(scenario.routes())
        real_ids = [scenario.id, *scenario.revisions, *(r.id for r in routes), *governed]
        input_type, strategy = mutations(real_ids)[mutation]

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(value=strategy)
        def fuzz(value: Any) -> None:
            loop.run_until_complete(send(client, mutation, input_type, value))
            loop.run_until_complete(back_to_a_rollout(scenario))

        fuzz()
        loop.run_until_complete(invariants.check(db))
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(db.disconnect())
        loop.close()
