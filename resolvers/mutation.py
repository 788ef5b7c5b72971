"""Root mutation fields: authorize, parse the input, call one store function, shape the payload."""

from typing import Any

from ariadne import MutationType
from graphql import GraphQLResolveInfo

from resolvers import inputs
from resolvers.context import context
from store import deployments

mutation = MutationType()


@mutation.field("createDeployment")
async def resolve_create_deployment(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    created = await deployments.create_deployment(
        ctx.db,
        project_id=input["project_id"],
        name=input["name"],
        replicas=input["replicas"],
        strategy=inputs.strategy(input["strategy"]),
        actor=ctx.actor,
    )
    return {"deployment": created}


@mutation.field("addRevision")
async def resolve_add_revision(_: None, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
    ctx = context(info)
    added = await deployments.add_revision(
        ctx.db,
        deployment_id=input["deployment_id"],
        image=input["image"],
        env=input.get("env"),
        health_check_path=input.get("health_check_path"),
        actor=ctx.actor,
    )
    return {"revision": added}
