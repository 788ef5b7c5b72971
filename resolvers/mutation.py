"""Root mutation fields: authorize, parse the input, call one store function, shape the payload."""

from typing import Any

from ariadne import MutationType
from graphql import GraphQLResolveInfo

from resolvers import inputs
from resolvers.auth import require_change
from resolvers.context import Context, context
from store import deployments, governance, rollouts, route_health
from store.errors import Forbidden
from store.models import Promotion
from store.validation import parse_id

mutation = MutationType()


@mutation.field("createDeployment")
async def resolve_create_deployment(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    project_id = parse_id(input["project_id"], "projectId")
    require_change(ctx.principal, project_id)
    created = await deployments.create_deployment(
        ctx.db,
        project_id=project_id,
        name=input["name"],
        replicas=input["replicas"],
        strategy=inputs.strategy(input["strategy"], prometheus=ctx.prometheus),
        actor=ctx.actor,
    )
    return {"deployment": created}


@mutation.field("addRevision")
async def resolve_add_revision(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    await ctx.may_change(input["deployment_id"])
    added = await deployments.add_revision(
        ctx.db,
        deployment_id=input["deployment_id"],
        image=input["image"],
        env=input.get("env"),
        health_check_path=input.get("health_check_path"),
        actor=ctx.actor,
        projects=ctx.readable_projects,
    )
    return {"revision": added}


@mutation.field("deployRevision")
async def resolve_deploy_revision(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    await ctx.may_change(input["deployment_id"])
    deployment = await rollouts.deploy_revision(
        ctx.db,
        input["deployment_id"],
        input["revision_id"],
        actor=ctx.actor,
        projects=ctx.readable_projects,
        break_glass=break_glass(ctx, input),
    )
    return {"deployment": deployment}


@mutation.field("promoteDeployment")
async def resolve_promote_deployment(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> Promotion:
    ctx = context(info)
    await ctx.may_change(input["deployment_id"])
    return await rollouts.promote(
        ctx.db,
        input["deployment_id"],
        actor=ctx.actor,
        projects=ctx.readable_projects,
        expected_revision_id=input.get("expected_revision_id"),
        dry_run=bool(input.get("dry_run")),
        skip_analysis=bool(input.get("skip_analysis")),
        full=bool(input.get("full")),
        break_glass=break_glass(ctx, input),
    )


@mutation.field("revertPromotion")
async def resolve_revert_promotion(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    await ctx.may_change(input["deployment_id"])
    deployment = await rollouts.revert_promotion(
        ctx.db, input["deployment_id"], actor=ctx.actor, projects=ctx.readable_projects, reason=input.get("reason")
    )
    return {"deployment": deployment}


@mutation.field("rollbackDeployment")
async def resolve_rollback_deployment(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    await ctx.may_change(input["deployment_id"])
    deployment = await rollouts.begin_rollback(
        ctx.db, input["deployment_id"], actor=ctx.actor, projects=ctx.readable_projects, reason=input.get("reason")
    )
    return {"deployment": deployment}


@mutation.field("scaleDeployment")
async def resolve_scale_deployment(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    await ctx.may_change(input["deployment_id"])
    deployment = await deployments.scale(
        ctx.db, input["deployment_id"], input["replicas"], actor=ctx.actor, projects=ctx.readable_projects
    )
    return {"deployment": deployment}


@mutation.field("updateDeploymentStrategy")
async def resolve_update_deployment_strategy(
    _: None, info: GraphQLResolveInfo, input: dict[str, Any]
) -> dict[str, Any]:
    ctx = context(info)
    await ctx.may_change(input["deployment_id"])
    deployment = await deployments.change_strategy(
        ctx.db,
        input["deployment_id"],
        inputs.strategy(input["strategy"], prometheus=ctx.prometheus),
        actor=ctx.actor,
        projects=ctx.readable_projects,
    )
    return {"deployment": deployment}


@mutation.field("destroyDeployment")
async def resolve_destroy_deployment(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    await ctx.may_change(input["deployment_id"])
    deployment = await deployments.destroy(
        ctx.db, input["deployment_id"], actor=ctx.actor, projects=ctx.readable_projects
    )
    return {"deployment": deployment}


@mutation.field("reportRouteHealth")
async def resolve_report_route_health(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    await ctx.may_change_route(input["route_id"])
    route = await route_health.report_route_health(
        ctx.db,
        input["route_id"],
        input["status"],
        endpoint_url=input.get("endpoint_url"),
        actor=ctx.actor,
        projects=ctx.readable_projects,
    )
    return {"route": route}


# --- governance (SPEC §8) -------------------------------------------------------------------------------------------


def break_glass(ctx: Context, input: dict[str, Any]) -> str | None:
    """The reason of a `breakGlass` given with a deploy or a promotion; only an admin may pass a freeze window."""
    given = input.get("break_glass")
    if given is None:
        return None
    if not ctx.principal.is_admin:
        raise Forbidden(f"{ctx.principal.sub} may not break the glass of a freeze window: that takes the admin role")
    return str(given["reason"])


@mutation.field("approvePromotion")
async def resolve_approve_promotion(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    await ctx.may_change(input["deployment_id"])  # operators of the project, and admins
    deployment, approval = await governance.approve(
        ctx.db,
        input["deployment_id"],
        input["revision_id"],
        actor=ctx.actor,
        comment=input.get("comment"),
        projects=ctx.readable_projects,
    )
    return {"deployment": deployment, "approval": approval}


@mutation.field("createFreezeWindow")
async def resolve_create_freeze_window(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    project_id = parse_id(input["project_id"], "projectId")
    require_change(ctx.principal, project_id)
    window = await governance.create_freeze_window(
        ctx.db,
        project_id=project_id,
        starts_at=input["starts_at"],
        ends_at=input["ends_at"],
        reason=input["reason"],
        actor=ctx.actor,
    )
    return {"freeze_window": window}


@mutation.field("deleteFreezeWindow")
async def resolve_delete_freeze_window(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    window = await ctx.load(governance.freeze_windows_by_ids, input["id"])
    if window is not None and ctx.principal.can_read(window.project_id):  # else the store does not find it
        require_change(ctx.principal, window.project_id)
    deleted = await governance.delete_freeze_window(
        ctx.db, input["id"], actor=ctx.actor, projects=ctx.readable_projects
    )
    return {"freeze_window": deleted}
