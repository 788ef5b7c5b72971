"""Whose routes a name leads to, for both data planes: names are unique per project only, so where two projects'
live deployments share one, the oldest owns the path (`switchover proxy`) and the backend (`switchover haproxy`).
"""

import uuid

from databases import Database

from store import deployments, replicas, route_health
from store.models import RouteStatus
from tests.scenario import Scenario, blue_green

PAIRS = 8  # deployments are ids, not ages: with the oldest picked by chance, all 8 pairs right is 1 in 256


async def ready_with_endpoints(db: Database, *, name: str | None = None) -> Scenario:
    scenario = Scenario(db)
    if name is None:
        await scenario.given_deployment(replicas=1)
    else:
        created = await deployments.create_deployment(
            db, project_id=str(uuid.uuid4()), name=name, replicas=1, strategy=blue_green(), actor="alice"
        )
        scenario.id, scenario.project_id = created.id, created.project_id
    await scenario.deploy()
    await scenario.tick()
    for route in await scenario.live_routes():
        await route_health.report_route_health(
            db, route.id, RouteStatus.HEALTHY, endpoint_url="http://127.0.0.1:9", actor="orchestrator"
        )
    await scenario.tick()
    assert await scenario.state() == "READY", await scenario.history()
    return scenario


async def test_a_name_two_projects_share_leads_to_the_oldest_deployment_on_both_data_planes(db: Database) -> None:
    # Given pairs of READY deployments, each pair one name in two projects, the first of each pair created first
    owners = {}
    for _ in range(PAIRS):
        first = await ready_with_endpoints(db)
        name = (await first.deployment()).name
        await ready_with_endpoints(db, name=name)
        owners[name] = first.id

    # When the data planes read where each name leads
    table = await replicas.traffic_table(db)
    servers = await replicas.haproxy_servers(db)

    # Then every name leads to the routes of the deployment created first
    assert {name: {d.deployment_id for d in table.traffic[name]} for name in owners} == {
        name: {owner} for name, owner in owners.items()
    }
    assert {name: {s.deployment_id for s in servers if s.deployment_name == name} for name in owners} == {
        name: {owner} for name, owner in owners.items()
    }
