"""A deployment's own operations: create it, add revisions, scale it, change its strategy, destroy it. Each is one
transaction: lock the deployment row, re-check its state, apply guarded updates, write history, notify the scheduler."""

from typing import Any

import asyncpg
from databases import Database

from store import analysis, history, records, validation
from store.deployment_state import Projects, lock_at_rest, lock_deployment, move, notify
from store.errors import Conflict, InvalidState
from store.models import Deployment, DeploymentLifecycle, Revision, Strategy
from store.queries import QUERIES


async def create_deployment(
    db: Database, *, project_id: str, name: str, replicas: int, strategy: Strategy, actor: str
) -> Deployment:
    project_id = validation.parse_id(project_id, "projectId")
    validation.check_name(name)
    validation.check_replicas(replicas)
    validation.check_strategy(strategy, replicas)
    async with db.transaction():
        try:
            row = await db.fetch_one(
                QUERIES["create_deployment"],
                {"project_id": project_id, "name": name, "replicas": replicas, **records.strategy_values(strategy)},
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(
                f"project {project_id} already has a deployment named {name!r}; "
                "choose another name or destroy that deployment first"
            ) from None
        assert row is not None
        row = await db.fetch_one(
            QUERIES["set_canary_strategy"], {"id": row["id"], "canary": records.canary_spec_json(strategy.canary_spec)}
        )
        assert row is not None
        created = records.deployment(row)
        await history.record(
            db,
            created.id,
            phase="create",
            message=f"created deployment {name} with {replicas} replicas ({strategy.type.value})",
            actor=actor,
            to_state=(created.lifecycle, None),
        )
    return created


async def add_revision(
    db: Database,
    *,
    deployment_id: str,
    image: str,
    env: dict[str, Any] | None,
    health_check_path: str | None,
    actor: str,
    projects: Projects = None,
) -> Revision:
    deployment_id = validation.parse_id(deployment_id, "deploymentId")
    env = {} if env is None else env
    health_check_path = "/health" if health_check_path is None else health_check_path
    validation.check_image(image)
    validation.check_env(env)
    validation.check_health_check_path(health_check_path)
    async with db.transaction():
        deployment = await lock_deployment(db, deployment_id, projects=projects)
        if deployment.lifecycle in (DeploymentLifecycle.DESTROYING, DeploymentLifecycle.DESTROYED):
            raise InvalidState(f"deployment {deployment.name} is {deployment.lifecycle.value}: it takes no revisions")
        number = await db.fetch_val(QUERIES["take_revision_number"], {"id": deployment_id})
        revision_row = await db.fetch_one(
            QUERIES["insert_revision"],
            {
                "deployment_id": deployment_id,
                "number": number,
                "image": image,
                "env": env,
                "health_check_path": health_check_path,
            },
        )
        assert revision_row is not None
        added = records.revision(revision_row)
        await history.note(
            db, deployment, phase="add_revision", message=f"added revision {number} ({image})", actor=actor
        )
    return added


async def scale(
    db: Database, deployment_id: str, replicas: int, *, actor: str, projects: Projects = None
) -> Deployment:
    deployment_id = validation.parse_id(deployment_id, "deploymentId")
    validation.check_replicas(replicas)
    async with db.transaction():
        deployment = await lock_at_rest(db, deployment_id, to="scale it", projects=projects)
        await analysis.refuse_while_judging_a_promotion(db, deployment, to="scale it")
        validation.check_strategy(deployment.strategy, replicas)
        row = await db.fetch_one(QUERIES["set_replicas"], {"id": deployment.id, "replicas": replicas})
        assert row is not None
        updated = records.deployment(row)
        await history.note(
            db,
            deployment,
            phase="scale",
            message=f"scaled from {deployment.replicas} to {replicas} replicas",
            actor=actor,
        )
        await notify(db, deployment.id)
    return updated


async def change_strategy(
    db: Database, deployment_id: str, strategy: Strategy, *, actor: str, projects: Projects = None
) -> Deployment:
    deployment_id = validation.parse_id(deployment_id, "deploymentId")
    async with db.transaction():
        deployment = await lock_at_rest(db, deployment_id, to="change its strategy", projects=projects)
        await analysis.refuse_while_judging_a_promotion(db, deployment, to="change its strategy")
        validation.check_strategy(strategy, deployment.replicas)
        row = await db.fetch_one(QUERIES["set_strategy"], {"id": deployment.id, **records.strategy_values(strategy)})
        row = await db.fetch_one(
            QUERIES["set_canary_strategy"],
            {"id": deployment.id, "canary": records.canary_spec_json(strategy.canary_spec)},
        )
        assert row is not None
        await history.note(
            db,
            deployment,
            phase="strategy",
            message=f"strategy changed from {deployment.strategy.type} to {strategy.type}",
            actor=actor,
        )
    return records.deployment(row)


async def destroy(db: Database, deployment_id: str, *, actor: str, projects: Projects = None) -> Deployment:
    deployment_id = validation.parse_id(deployment_id, "deploymentId")
    async with db.transaction():
        deployment = await lock_at_rest(db, deployment_id, to="destroy it", projects=projects)
        updated = await move(
            db,
            deployment,
            (DeploymentLifecycle.DESTROYING, None),
            phase="destroy",
            message=f"destroying deployment {deployment.name}",
            actor=actor,
        )
    return updated
