"""Route health as orchestrators and health checks report it, in one transaction with the deployment locked."""

from databases import Database

from store import history, records, validation
from store.deployment_state import Projects, lock_deployment, notify
from store.errors import InvalidState, does_not_exist
from store.models import DeploymentLifecycle, Route, RouteStatus, RouteTrafficStatus
from store.queries import QUERIES

# Health an orchestrator may report; TERMINATING is the control plane's decision, never a report.
REPORTABLE_STATUSES = frozenset(
    {
        RouteStatus.PROVISIONING,
        RouteStatus.HEALTHY,
        RouteStatus.UNHEALTHY,
        RouteStatus.DEGRADED,
        RouteStatus.FAILED_TO_START,
        RouteStatus.TERMINATED,
    }
)


async def report_route_health(
    db: Database,
    route_id: str,
    status: RouteStatus,
    *,
    endpoint_url: str | None = None,
    actor: str,
    projects: Projects = None,
) -> Route:
    """Record what an orchestrator (or a health probe) saw of a route, and wake the scheduler."""
    route_id = validation.parse_id(route_id, "routeId")
    status = RouteStatus(status)
    if status not in REPORTABLE_STATUSES:
        raise validation.BadUserInput(
            f"status {status} cannot be reported: it is set by Switchover; report one of "
            + ", ".join(sorted(REPORTABLE_STATUSES))
        )
    if endpoint_url is not None:
        validation.check_endpoint_url(endpoint_url)
    # Another project's route is not found, as a missing one: the caller may not read it.
    visible = None if projects is None else list(projects)
    owner = await db.fetch_val(QUERIES["deployment_of_route"], {"id": route_id, "projects": visible})
    if owner is None:
        raise does_not_exist("route", route_id)
    async with db.transaction():
        deployment = await lock_deployment(db, str(owner))
        row = await db.fetch_one(QUERIES["lock_route"], {"id": route_id})
        assert row is not None
        route = records.route(row)
        if route.status is RouteStatus.TERMINATED:
            raise InvalidState(f"route {route_id} is TERMINATED; it takes no more reports")
        if route.status is RouteStatus.TERMINATING and status is not RouteStatus.TERMINATED:
            raise InvalidState(f"route {route_id} is TERMINATING; only TERMINATED can be reported for it")
        updated_row = await db.fetch_one(
            QUERIES["report_route_health"], {"id": route_id, "status": status.value, "endpoint_url": endpoint_url}
        )
        assert updated_row is not None
        updated = records.route(updated_row)
        if route.traffic_status is RouteTrafficStatus.ACTIVE and updated.traffic_status is RouteTrafficStatus.INACTIVE:
            # A route that stopped took its share with it: the others share all the traffic again. A canary in
            # flight keeps its weight: the share goes to the routes of the same revision, when there are any left.
            kept = 0
            if deployment.lifecycle is DeploymentLifecycle.DEPLOYING and deployment.strategy.canary is not None:
                kept = await db.fetch_val(
                    QUERIES["share_within_revision"],
                    {"deployment_id": deployment.id, "revision_id": route.revision_id, "lost": route.traffic_ratio},
                )
            if not kept:
                await db.execute(QUERIES["share_traffic_equally"], {"deployment_id": deployment.id})
        if updated.status is not route.status:
            await history.note(
                db,
                deployment,
                phase="route_health",
                message=f"route {route.id} ({route.traffic_status}) went from {route.status} to {updated.status}",
                actor=actor,
            )
            await db.execute(QUERIES["wake_deployment"], {"id": deployment.id})
            await notify(db, deployment.id)
    return updated
