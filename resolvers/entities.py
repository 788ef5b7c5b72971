"""Deployment, Revision, Route and Project: nested fields and federation references, all batched per request."""

from datetime import datetime
from typing import Any

from ariadne import ObjectType
from ariadne.contrib.federation import FederatedObjectType
from graphql import GraphQLResolveInfo

from resolvers.auth import require_read
from resolvers.connections import connection
from resolvers.context import context
from scheduler import deadlines
from scheduler.diagnosis import WaitingFor, waiting_for
from store import governance, reads, traffic
from store.analysis import analyses
from store.models import (
    UNGOVERNED,
    AnalysisRun,
    AnalysisRunKind,
    Approval,
    CanaryStatus,
    Deployment,
    DeploymentLifecycle,
    DeploymentLifecycleSubStep,
    FreezeWindow,
    Measurement,
    Page,
    Revision,
    Route,
    RouteStatus,
    RouteTrafficStatus,
    ShadowStats,
)
from store.validation import canonical_id

deployment_type = FederatedObjectType("Deployment")
revision_type = FederatedObjectType("Revision")
route_type = FederatedObjectType("Route")
project_type = FederatedObjectType("Project")
analysis_run_type = ObjectType("AnalysisRun")
approval_type = ObjectType("Approval")
shadow_stats_type = ObjectType("ShadowStats")


@deployment_type.reference_resolver
async def resolve_deployment_reference(_: Any, info: GraphQLResolveInfo, representation: dict) -> Deployment | None:
    ctx = context(info)
    return await ctx.readable(await ctx.load(reads.deployments_by_ids, representation["id"]))


@revision_type.reference_resolver
async def resolve_revision_reference(_: Any, info: GraphQLResolveInfo, representation: dict) -> Revision | None:
    ctx = context(info)
    return await ctx.readable_via(await ctx.load(reads.revisions_by_ids, representation["id"]))


@route_type.reference_resolver
async def resolve_route_reference(_: Any, info: GraphQLResolveInfo, representation: dict) -> Route | None:
    ctx = context(info)
    return await ctx.readable_via(await ctx.load(reads.routes_by_ids, representation["id"]))


@project_type.reference_resolver
async def resolve_project_reference(_: Any, info: GraphQLResolveInfo, representation: dict) -> dict[str, Any]:
    # Projects are owned by another subgraph: any id is a project, possibly one without deployments.
    return {"id": representation["id"]}


@deployment_type.field("currentRevision")
async def resolve_current_revision(deployment: Deployment, info: GraphQLResolveInfo) -> Revision | None:
    if deployment.current_revision_id is None:
        return None
    return await context(info).load(reads.revisions_by_ids, deployment.current_revision_id)


@deployment_type.field("deployingRevision")
async def resolve_deploying_revision(deployment: Deployment, info: GraphQLResolveInfo) -> Revision | None:
    if deployment.deploying_revision_id is None:
        return None
    return await context(info).load(reads.revisions_by_ids, deployment.deploying_revision_id)


@deployment_type.field("waitingFor")
async def resolve_waiting_for(deployment: Deployment, info: GraphQLResolveInfo) -> WaitingFor | None:
    spec = deployment.strategy.blue_green_spec
    if deployment.lifecycle is not DeploymentLifecycle.DEPLOYING and not (
        deployment.lifecycle is DeploymentLifecycle.READY and spec.post_promotion_analysis is not None
    ):
        return None
    ctx = context(info)
    routes = await ctx.load(reads.routes_of_deployments, deployment.id, statuses=None, traffic_status=None)
    rules = UNGOVERNED
    if deployment.lifecycle is DeploymentLifecycle.DEPLOYING:  # approvals and freezes hold only rollouts in flight
        rules = await ctx.load(governance.of_deployments, deployment.id) or UNGOVERNED
    runs: dict[AnalysisRunKind, AnalysisRun] = {}
    if analyses(deployment):  # the newest runs of its current rollout epoch
        latest = await ctx.load(reads.latest_analysis_runs, deployment.id)
        runs = {AnalysisRunKind(k): r for k, r in (latest or {}).items()}
    return waiting_for(deployment, routes, await ctx.now(), runs, rules)


@deployment_type.field("canaryStatus")
def resolve_canary_status(deployment: Deployment, info: GraphQLResolveInfo) -> CanaryStatus | None:
    stepping = (
        DeploymentLifecycleSubStep.DEPLOYING_PROGRESSING,
        DeploymentLifecycleSubStep.DEPLOYING_AWAITING_PROMOTION,
    )
    if deployment.strategy.canary is None or deployment.sub_step not in stepping:
        return None
    if deployment.canary_step_index is None or deployment.canary_weight is None:
        return None
    return CanaryStatus(deployment.canary_step_index, deployment.canary_weight)


@deployment_type.field("shadowStats")
async def resolve_shadow_stats(deployment: Deployment, info: GraphQLResolveInfo) -> ShadowStats | None:
    if deployment.deploying_revision_id is None:
        return None
    return await context(info).load(traffic.shadow_stats_of_deployments, deployment.id)


@shadow_stats_type.field("intervals")
async def resolve_shadow_intervals(
    stats: traffic.RolloutShadowStats, info: GraphQLResolveInfo, seconds: int | None = None, step: int | None = None
) -> list[traffic.ShadowInterval]:
    length, slots = traffic.interval_slots(seconds, step)
    found = await context(info).load(
        traffic.shadow_intervals_of_deployments, stats.deployment_id, step=length, slots=slots
    )
    return found or []


@deployment_type.field("nextActionAt")
def resolve_next_action_at(deployment: Deployment, info: GraphQLResolveInfo) -> datetime | None:
    return deadlines.next_action_at(deployment)


@deployment_type.field("revisions")
async def resolve_revisions(
    deployment: Deployment, info: GraphQLResolveInfo, first: int | None = None, after: str | None = None
) -> dict[str, Any]:
    page = await context(info).load(reads.revision_pages, deployment.id, first=first, after=after)
    return connection(page)


@deployment_type.field("routes")
async def resolve_routes(
    deployment: Deployment,
    info: GraphQLResolveInfo,
    status: list[RouteStatus] | None = None,
    traffic_status: RouteTrafficStatus | None = None,
) -> list[Route]:
    return await context(info).load(
        reads.routes_of_deployments, deployment.id, statuses=status, traffic_status=traffic_status
    )


@deployment_type.field("analysisRuns")
async def resolve_analysis_runs(
    deployment: Deployment, info: GraphQLResolveInfo, first: int | None = None, after: str | None = None
) -> dict[str, Any]:
    page = await context(info).load(reads.analysis_run_pages, deployment.id, first=first, after=after)
    return connection(page)


@analysis_run_type.field("revision")
async def resolve_analysis_run_revision(run: AnalysisRun, info: GraphQLResolveInfo) -> Revision:
    return await context(info).load(reads.revisions_by_ids, run.revision_id)


@analysis_run_type.field("measurements")
async def resolve_measurements(run: AnalysisRun, info: GraphQLResolveInfo) -> list[Measurement]:
    return await context(info).load(reads.measurements_of_runs, run.id)


analysis_run_type.set_alias("passedChecks", "passed")
analysis_run_type.set_alias("failedChecks", "failed")


@deployment_type.field("history")
async def resolve_history(
    deployment: Deployment, info: GraphQLResolveInfo, first: int | None = None, after: str | None = None
) -> dict[str, Any]:
    page = await context(info).load(reads.history_pages, deployment.id, first=first, after=after)
    return connection(page)


async def resolve_record_deployment(record: Revision | Route, info: GraphQLResolveInfo) -> Deployment:
    return await context(info).load(reads.deployments_by_ids, record.deployment_id)


revision_type.set_field("deployment", resolve_record_deployment)
route_type.set_field("deployment", resolve_record_deployment)


@route_type.field("revision")
async def resolve_route_revision(route: Route, info: GraphQLResolveInfo) -> Revision:
    return await context(info).load(reads.revisions_by_ids, route.revision_id)


@project_type.field("deployments")
async def resolve_project_deployments(
    project: dict[str, Any],
    info: GraphQLResolveInfo,
    lifecycle: list[DeploymentLifecycle] | None = None,
    first: int | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    ctx = context(info)
    require_read(ctx.principal, canonical_id(project["id"]) or project["id"])
    page = await ctx.load(
        reads.deployment_pages_of_projects, project["id"], lifecycles=lifecycle, first=first, after=after
    )
    if page is None:  # not a UUID: no deployment can belong to it
        return connection(Page([], has_next_page=False))
    return connection(page)


# --- governance (SPEC §8) -------------------------------------------------------------------------------------------


@deployment_type.field("approvals")
async def resolve_approvals(deployment: Deployment, info: GraphQLResolveInfo) -> list[Approval]:
    if deployment.lifecycle is not DeploymentLifecycle.DEPLOYING:
        return []
    return await context(info).load(governance.approvals_of_deployments, deployment.id) or []


@deployment_type.field("activeFreezeWindow")
async def resolve_active_freeze_window(deployment: Deployment, info: GraphQLResolveInfo) -> FreezeWindow | None:
    rules = await context(info).load(governance.of_deployments, deployment.id)
    return None if rules is None else rules.freeze


@approval_type.field("revision")
async def resolve_approval_revision(approval: Approval, info: GraphQLResolveInfo) -> Revision:
    return await context(info).load(reads.revisions_by_ids, approval.revision_id)


@project_type.field("freezeWindows")
async def resolve_project_freeze_windows(project: dict[str, Any], info: GraphQLResolveInfo) -> list[FreezeWindow]:
    ctx = context(info)
    require_read(ctx.principal, canonical_id(project["id"]) or project["id"])
    return await ctx.load(governance.freeze_windows_of_projects, project["id"]) or []
