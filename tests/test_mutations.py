"""Lifecycle mutations over GraphQL: payload shapes, error codes, and a refused request writing nothing."""

import uuid
from typing import Any

import pytest

from store.models import RouteStatus
from tests.graphql import data, error_code, gql
from tests.scenario import Scenario
from tests.state import snapshot

DEPLOY = """
mutation($d: ID!, $r: ID!) {
  deployRevision(input: {deploymentId: $d, revisionId: $r}) {
    deployment { lifecycle subStep deployingRevision { number } nextActionAt phaseStartedAt }
  }
}"""
PROMOTE = """
mutation($d: ID!, $expected: ID, $dry: Boolean) {
  promoteDeployment(input: {deploymentId: $d, expectedRevisionId: $expected, dryRun: $dry}) {
    dryRun
    deployment { lifecycle currentRevision { number } deployingRevision { number } }
    promotedRoutes { revision { number } trafficStatus trafficRatio }
    drainedRoutes { revision { number } trafficStatus trafficRatio }
  }
}"""
ROLLBACK = """
mutation($d: ID!, $why: String) {
  rollbackDeployment(input: {deploymentId: $d, reason: $why}) { deployment { subStep } }
}"""
SCALE = """
mutation($d: ID!, $n: Int!) { scaleDeployment(input: {deploymentId: $d, replicas: $n}) { deployment { replicas } } }
"""
DESTROY = "mutation($d: ID!) { destroyDeployment(input: {deploymentId: $d}) { deployment { lifecycle } } }"
REPORT = """
mutation($r: ID!, $s: RouteStatus!, $url: String) {
  reportRouteHealth(input: {routeId: $r, status: $s, endpointUrl: $url}) { route { status endpointUrl } }
}"""


async def awaiting_promotion(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=2)
    await scenario.awaiting_promotion_of_revision_2()


async def test_deploy_revision_starts_provisioning_with_a_timeout_due(scenario: Scenario, client: Any) -> None:
    await scenario.given_deployment()
    revision = await scenario.add_revision()

    result = (await data(client, DEPLOY, {"d": scenario.id, "r": revision}))["deployRevision"]["deployment"]

    assert result["lifecycle"] == "DEPLOYING"
    assert result["subStep"] == "DEPLOYING_PROVISIONING"
    assert result["deployingRevision"] == {"number": 1}
    assert result["nextActionAt"] > result["phaseStartedAt"]  # the provisioning timeout


async def test_promote_dry_run_then_promote_over_graphql(scenario: Scenario, client: Any, db: Any) -> None:
    await awaiting_promotion(scenario)
    before = await snapshot(db)

    dry = (await data(client, PROMOTE, {"d": scenario.id, "dry": True}))["promoteDeployment"]
    assert dry["dryRun"] is True
    assert dry["deployment"]["lifecycle"] == "DEPLOYING"
    assert [r["revision"]["number"] for r in dry["promotedRoutes"]] == [2, 2]
    assert [r["revision"]["number"] for r in dry["drainedRoutes"]] == [1, 1]
    assert await snapshot(db) == before

    done = (await data(client, PROMOTE, {"d": scenario.id, "expected": scenario.revisions[1]}))["promoteDeployment"]
    assert done["dryRun"] is False
    assert done["deployment"] == {"lifecycle": "READY", "currentRevision": {"number": 2}, "deployingRevision": None}
    assert done["promotedRoutes"] == [{"revision": {"number": 2}, "trafficStatus": "ACTIVE", "trafficRatio": 0.5}] * 2
    assert done["drainedRoutes"] == [{"revision": {"number": 1}, "trafficStatus": "INACTIVE", "trafficRatio": 0}] * 2


async def test_history_names_the_caller_and_the_scheduler(scenario: Scenario, client: Any) -> None:
    await awaiting_promotion(scenario)
    await data(client, PROMOTE, {"d": scenario.id})

    query = "query($d: ID!) { deployment(id: $d) { history(first: 3) { edges { node { phase actor } } } } }"
    edges = (await data(client, query, {"d": scenario.id}))["deployment"]["history"]["edges"]
    assert [e["node"] for e in edges] == [
        {"phase": "promote", "actor": "anonymous"},
        {"phase": "provision", "actor": "scheduler"},
        {"phase": "route_health", "actor": "orchestrator"},
    ]


async def refusals(scenario: Scenario) -> list[tuple[str, str, dict[str, Any], str]]:
    ready_route = (await scenario.routes(revision=1))[0].id
    return [
        ("promote a READY deployment", PROMOTE, {"d": scenario.id}, "INVALID_STATE"),
        ("promote an unknown deployment", PROMOTE, {"d": str(uuid.uuid4())}, "NOT_FOUND"),
        ("promote a malformed id", PROMOTE, {"d": "x"}, "BAD_USER_INPUT"),
        ("deploy the current revision", DEPLOY, {"d": scenario.id, "r": scenario.revisions[0]}, "INVALID_STATE"),
        ("deploy an unknown revision", DEPLOY, {"d": scenario.id, "r": str(uuid.uuid4())}, "NOT_FOUND"),
        ("roll back a READY deployment", ROLLBACK, {"d": scenario.id}, "INVALID_STATE"),
        ("roll back with a huge reason", ROLLBACK, {"d": scenario.id, "why": "x" * 1001}, "BAD_USER_INPUT"),
        ("scale to zero", SCALE, {"d": scenario.id, "n": 0}, "BAD_USER_INPUT"),
        ("scale to 1001", SCALE, {"d": scenario.id, "n": 1001}, "BAD_USER_INPUT"),
        ("report TERMINATING", REPORT, {"r": ready_route, "s": "TERMINATING"}, "BAD_USER_INPUT"),
        ("report an unknown status", REPORT, {"r": ready_route, "s": "ASLEEP"}, "BAD_USER_INPUT"),
        ("report a bad endpoint", REPORT, {"r": ready_route, "s": "HEALTHY", "url": "ftp://x"}, "BAD_USER_INPUT"),
        ("report a bad port", REPORT, {"r": ready_route, "s": "HEALTHY", "url": "http://h:99999"}, "BAD_USER_INPUT"),
        ("report an unknown route", REPORT, {"r": str(uuid.uuid4()), "s": "HEALTHY"}, "NOT_FOUND"),
        ("destroy an unknown deployment", DESTROY, {"d": str(uuid.uuid4())}, "NOT_FOUND"),
    ]


@pytest.mark.parametrize("case", range(15))
async def test_a_refused_operation_names_its_code_and_writes_nothing(
    scenario: Scenario, client: Any, db: Any, case: int
) -> None:
    await scenario.given_deployment(replicas=1)
    await scenario.ready_on_first_revision()
    name, query, variables, code = (await refusals(scenario))[case]
    before = await snapshot(db)

    body = await gql(client, query, variables)

    assert error_code(body) == code, (name, body)
    assert await snapshot(db) == before, name


async def test_in_flight_rollouts_refuse_deploy_scale_and_destroy_as_conflicts(scenario: Scenario, client: Any) -> None:
    await awaiting_promotion(scenario)
    third = await scenario.add_revision()

    for query, variables in [
        (DEPLOY, {"d": scenario.id, "r": third}),
        (SCALE, {"d": scenario.id, "n": 3}),
        (DESTROY, {"d": scenario.id}),
    ]:
        assert error_code(await gql(client, query, variables)) == "CONFLICT"


async def test_a_route_health_report_records_the_endpoint(scenario: Scenario, client: Any) -> None:
    await scenario.given_deployment(replicas=1)
    await scenario.deploy()
    await scenario.tick()
    route = (await scenario.routes())[0]

    result = await data(client, REPORT, {"r": route.id, "s": "HEALTHY", "url": "http://127.0.0.1:9001"})

    assert result["reportRouteHealth"]["route"] == {"status": "HEALTHY", "endpointUrl": "http://127.0.0.1:9001"}
    assert (await scenario.routes())[0].status is RouteStatus.HEALTHY


async def test_routes_filter_by_status_and_traffic(scenario: Scenario, client: Any) -> None:
    await awaiting_promotion(scenario)
    query = """query($d: ID!) { deployment(id: $d) {
      active: routes(trafficStatus: ACTIVE) { revision { number } }
      healthyInactive: routes(status: [HEALTHY], trafficStatus: INACTIVE) { revision { number } }
      provisioning: routes(status: [PROVISIONING]) { id }
    } }"""
    result = (await data(client, query, {"d": scenario.id}))["deployment"]
    assert result["active"] == [{"revision": {"number": 1}}] * 2
    assert result["healthyInactive"] == [{"revision": {"number": 2}}] * 2
    assert result["provisioning"] == []


async def test_after_a_promotion_next_action_is_the_drain_of_the_old_routes(scenario: Scenario, client: Any) -> None:
    await awaiting_promotion(scenario)
    await data(client, PROMOTE, {"d": scenario.id})

    query = "query($d: ID!) { deployment(id: $d) { nextActionAt } }"
    next_action = (await data(client, query, {"d": scenario.id}))["deployment"]["nextActionAt"]

    drain = min(r.terminate_after for r in await scenario.routes(revision=1) if r.terminate_after)
    assert next_action == drain.isoformat()
