"""Root query fields."""

from typing import Any

from ariadne import QueryType
from graphql import GraphQLResolveInfo

from resolvers.connections import connection
from resolvers.context import context
from store import reads
from store.models import Deployment, DeploymentLifecycle, Revision, Route

query = QueryType()


@query.field("deployment")
async def resolve_deployment(_: None, info: GraphQLResolveInfo, id: str) -> Deployment | None:
    return await context(info).load(reads.deployments_by_ids, id)


@query.field("deployments")
async def resolve_deployments(
    _: None,
    info: GraphQLResolveInfo,
    project_id: str | None = None,
    lifecycle: list[DeploymentLifecycle] | None = None,
    first: int | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    page = await reads.list_deployments(
        context(info).db, project_id=project_id, lifecycles=lifecycle, first=first, after=after
    )
    return connection(page)


@query.field("revision")
async def resolve_revision(_: None, info: GraphQLResolveInfo, id: str) -> Revision | None:
    return await context(info).load(reads.revisions_by_ids, id)


@query.field("route")
async def resolve_route(_: None, info: GraphQLResolveInfo, id: str) -> Route | None:
    return await context(info).load(reads.routes_by_ids, id)
