"""`deploymentEvents`: history rows as they are written, over graphql-transport-ws."""

from collections.abc import AsyncIterator
from typing import Any

from ariadne import ObjectType, SubscriptionType
from graphql import GraphQLResolveInfo

from resolvers.auth import readable_projects, require_read
from resolvers.context import context
from store import events, reads
from store.errors import does_not_exist
from store.models import Deployment
from store.validation import parse_id

subscription = SubscriptionType()
event_type = ObjectType("DeploymentEvent")


@subscription.source("deploymentEvents")
async def deployment_events_source(
    _: None,
    info: GraphQLResolveInfo,
    deployment_id: str | None = None,
    project_id: str | None = None,
    after: str | None = None,
) -> AsyncIterator[events.Event]:
    ctx = context(info)
    if ctx.auth_error is not None:  # resolver middleware does not run for subscription sources
        raise ctx.auth_error
    if deployment_id is not None:
        deployment_id = parse_id(deployment_id, "deploymentId")
        if await ctx.readable(await ctx.load(reads.deployments_by_ids, deployment_id)) is None:
            raise does_not_exist("deployment", deployment_id)
    readable = readable_projects(ctx.principal)
    project_ids = readable  # also filters the deployment's events
    if project_id is not None:
        require_read(ctx.principal, parse_id(project_id, "projectId"))
        project_ids = [parse_id(project_id, "projectId")]
    # An event id of a project the caller may not read is refused as one that is no event.
    start = await events.position_of(ctx.db, None if after is None else parse_id(after, "after"), project_ids=readable)
    async for event in events.events(
        ctx.db, str(ctx.db.url), deployment_id=deployment_id, project_ids=project_ids, after_seq=start
    ):
        yield event


@subscription.field("deploymentEvents")
def resolve_deployment_event(event: events.Event, info: GraphQLResolveInfo, **_: Any) -> events.Event:
    return event


@event_type.field("deployment")
async def resolve_event_deployment(event: events.Event, info: GraphQLResolveInfo) -> Deployment | None:
    ctx = context(info)
    ctx.loaders.clear()  # a long-lived subscription: each event shows the deployment as it is now
    return await ctx.load(reads.deployments_by_ids, event.deployment_id)
