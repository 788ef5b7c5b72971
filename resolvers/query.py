"""Root query fields."""

from typing import Any

from ariadne import QueryType
from graphql import GraphQLResolveInfo

from resolvers.auth import readable_projects, require_read
from resolvers.connections import connection
from resolvers.context import context
from store import reads
from store.models import Deployment, DeploymentLifecycle, Revision, Route
from store.validation import parse_id

query = QueryType()


@query.field("deployment")
async def resolve_deployment(_: None, info: GraphQLResolveInfo, id: str) -> Deployment | None:
    ctx = context(info)
    return await ctx.readable(await ctx.load(reads.deployments_by_ids, id))


@query.field("deployments")
async def resolve_deployments(
    _: None,
    info: GraphQLResolveInfo,
    project_id: str | None = None,
    name: str | None = None,
    lifecycle: list[DeploymentLifecycle] | None = None,
    first: int | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    ctx = context(info)
    if project_id is not None:
        project_ids: list[str] | None = [parse_id(project_id, "projectId")]
        require_read(ctx.principal, project_ids[0])
    else:  # everyone sees the deployments of the projects they may read
        project_ids = readable_projects(ctx.principal)
    page = await reads.list_deployments(
        ctx.db, project_ids=project_ids, name=name, lifecycles=lifecycle, first=first, after=after
    )
    return connection(page)


@query.field("revision")
async def resolve_revision(_: None, info: GraphQLResolveInfo, id: str) -> Revision | None:
    ctx = context(info)
    return await ctx.readable_via(await ctx.load(reads.revisions_by_ids, id))


@query.field("route")
async def resolve_route(_: None, info: GraphQLResolveInfo, id: str) -> Route | None:
    ctx = context(info)
    return await ctx.readable_via(await ctx.load(reads.routes_by_ids, id))
