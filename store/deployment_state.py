"""How every operation changes a deployment's state, inside its one transaction: lock the row (then its routes),
re-check, and move to the next (lifecycle, subStep) with its history row and a NOTIFY, in one statement."""

from collections.abc import Sequence
from typing import Any

from databases import Database

from store import records
from store.errors import Conflict, InvalidState, does_not_exist
from store.models import Deployment, DeploymentLifecycle, DeploymentLifecycleSubStep, Route, SchedulingResult
from store.queries import QUERIES

DEPLOYING = DeploymentLifecycle.DEPLOYING
AWAITING_PROMOTION = DeploymentLifecycleSubStep.DEPLOYING_AWAITING_PROMOTION
ROLLING_BACK = DeploymentLifecycleSubStep.DEPLOYING_ROLLING_BACK


Projects = Sequence[str] | None  # the projects whose deployments a caller may read; None: every project


async def lock_deployment(db: Database, deployment_id: str, *, projects: Projects = None) -> Deployment:
    """Lock the deployment row for this transaction. One outside `projects` does not exist for the caller: it is
    refused exactly as an unknown id, at the same point of the operation."""
    values = {"id": deployment_id, "projects": None if projects is None else list(projects)}
    row = await db.fetch_one(QUERIES["lock_deployment"], values)
    if row is None:
        raise does_not_exist("deployment", deployment_id)
    return records.deployment(row)


async def lock_at_rest(db: Database, deployment_id: str, *, to: str, projects: Projects = None) -> Deployment:
    """Lock a deployment that is PENDING or READY: CONFLICT while a rollout is in flight (the caller may promote or
    roll back first), INVALID_STATE once it is being destroyed. `to` says what the caller wanted to do."""
    deployment = await lock_deployment(db, deployment_id, projects=projects)
    if deployment.lifecycle is DEPLOYING:
        raise Conflict(f"{describe(deployment)}: promote or roll back the rollout in flight before you {to}")
    if deployment.lifecycle not in (DeploymentLifecycle.PENDING, DeploymentLifecycle.READY):
        raise InvalidState(f"{describe(deployment)}: it is being destroyed, so you cannot {to}")
    return deployment


async def lock_routes(db: Database, deployment_id: str) -> list[Route]:
    rows = await db.fetch_all(QUERIES["lock_routes_of_deployment"], {"deployment_id": deployment_id})
    return [records.route(row) for row in rows]


async def revision_numbers(db: Database, *revision_ids: str | None) -> list[int | None]:
    """The numbers of these revisions (None for None), in one query."""
    rows = await db.fetch_all(QUERIES["revision_numbers"], {"ids": [i for i in revision_ids if i is not None]})
    numbers = {str(row["id"]): row["number"] for row in rows}
    return [None if i is None else numbers.get(i) for i in revision_ids]


async def notify(db: Database, deployment_id: str) -> None:
    await db.fetch_val(QUERIES["notify_change"], {"deployment_id": deployment_id})


async def move(
    db: Database,
    deployment: Deployment,
    to_state: tuple[DeploymentLifecycle, DeploymentLifecycleSubStep | None],
    *,
    phase: str,
    message: str,
    actor: str,
    result: SchedulingResult = SchedulingResult.SUCCESS,
    error_code: str | None = None,
    swap: bool = False,
    next_check_now: bool = True,
    next_check_at: Any = None,
) -> Deployment:
    """Change (lifecycle, subStep) of a locked deployment, write the transition's history row and wake schedulers,
    in one statement; `phaseStartedAt` becomes the database's now."""
    values = {
        "id": deployment.id,
        "from_lifecycle": deployment.lifecycle.value,
        "from_sub_step": deployment.sub_step.value if deployment.sub_step else None,
        "to_lifecycle": to_state[0].value,
        "to_sub_step": to_state[1].value if to_state[1] else None,
        "swap": swap,
        "check_now": next_check_now,
        "next_check_at": next_check_at,
        "phase": phase,
        "message": message,
        "actor": actor,
        "result": result.value,
        "error_code": error_code,
    }
    row = await db.fetch_one(QUERIES["move_deployment"], values)
    if row is None:  # cannot happen under the row lock; refuse rather than write over a change
        raise Conflict(f"deployment {deployment.name} changed state concurrently; retry")
    return records.deployment(row)


def state_of(deployment: Deployment) -> tuple[DeploymentLifecycle, DeploymentLifecycleSubStep | None]:
    return deployment.lifecycle, deployment.sub_step


def describe(deployment: Deployment) -> str:
    state = deployment.lifecycle.value + (f"/{deployment.sub_step.value}" if deployment.sub_step else "")
    return f"deployment {deployment.name} is {state}"
