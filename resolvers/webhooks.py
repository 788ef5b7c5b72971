"""Webhook fields (SPEC §8). Only operators and admins of a project see or manage its webhooks: a webhook's URL and
its deliveries say where a project's events go, which a viewer may not learn."""

from typing import Any

from ariadne import MutationType, QueryType
from graphql import GraphQLResolveInfo

from resolvers.auth import Principal, require_change
from resolvers.connections import connection
from resolvers.context import context
from store import webhooks
from store.errors import does_not_exist
from store.models import Webhook, WebhookDelivery
from store.validation import check_outbound_url, parse_id

webhook_query = QueryType()
webhook_mutation = MutationType()


def _managed(principal: Principal, webhook: Webhook | None, webhook_id: str) -> Webhook:
    """The webhook if the caller manages its project: NOT_FOUND when it cannot even read the project (as for an
    unknown id), FORBIDDEN when it only reads it."""
    if webhook is None or not principal.can_read(webhook.project_id):
        raise does_not_exist("webhook", webhook_id)
    require_change(principal, webhook.project_id)
    return webhook


@webhook_query.field("webhooks")
async def resolve_webhooks(_: None, info: GraphQLResolveInfo, project_id: str) -> list[Webhook]:
    ctx = context(info)
    project_id = parse_id(project_id, "projectId")
    require_change(ctx.principal, project_id)
    return await webhooks.webhooks_of_project(ctx.db, project_id)


@webhook_query.field("webhookDeliveries")
async def resolve_webhook_deliveries(
    _: None, info: GraphQLResolveInfo, webhook_id: str, first: int | None = None, after: str | None = None
) -> dict[str, Any]:
    ctx = context(info)
    found = (await webhooks.webhooks_by_ids(ctx.db, [webhook_id])).get(parse_id(webhook_id, "webhookId"))
    webhook = _managed(ctx.principal, found, webhook_id)
    return connection(await webhooks.deliveries(ctx.db, webhook.id, first=first, after=after))


@webhook_mutation.field("createWebhook")
async def resolve_create_webhook(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    project_id = parse_id(input["project_id"], "projectId")
    require_change(ctx.principal, project_id)
    if ctx.allow_loopback_urls is False:  # the store cannot know this server's setting; delivery checks it again
        check_outbound_url(input["url"], "url", allow_loopback=False)
    created = await webhooks.create(
        ctx.db,
        project_id=project_id,
        url=input["url"],
        events=input.get("events"),
        secret=input["secret"],
        actor=ctx.actor,
    )
    return {"webhook": created}


@webhook_mutation.field("deleteWebhook")
async def resolve_delete_webhook(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    found = (await webhooks.webhooks_by_ids(ctx.db, [input["id"]])).get(parse_id(input["id"], "id"))
    webhook = _managed(ctx.principal, found, input["id"])
    return {"webhook": await webhooks.delete(ctx.db, webhook.id)}


@webhook_mutation.field("redeliverWebhook")
async def resolve_redeliver_webhook(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    delivery_id = input["delivery_id"]
    project_id = await webhooks.project_of_delivery(ctx.db, delivery_id)
    if project_id is None or not ctx.principal.can_read(project_id):
        raise does_not_exist("webhook delivery", delivery_id)
    require_change(ctx.principal, project_id)
    delivery: WebhookDelivery = await webhooks.redeliver(ctx.db, delivery_id)
    return {"delivery": delivery}
