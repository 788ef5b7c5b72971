"""Writing history rows; every state change calls this inside its own transaction."""

from databases.core import Connection, Database

from store.models import Deployment, DeploymentLifecycle, DeploymentLifecycleSubStep, SchedulingResult
from store.queries import QUERIES


async def record(
    db: Database | Connection,
    deployment_id: str,
    *,
    phase: str,
    message: str,
    actor: str,
    result: SchedulingResult = SchedulingResult.SUCCESS,
    from_state: tuple[DeploymentLifecycle | None, DeploymentLifecycleSubStep | None] = (None, None),
    to_state: tuple[DeploymentLifecycle | None, DeploymentLifecycleSubStep | None] = (None, None),
    error_code: str | None = None,
    attempts: int = 1,
) -> None:
    await db.execute(
        QUERIES["record_history"],
        {
            "deployment_id": deployment_id,
            "phase": phase,
            "from_lifecycle": from_state[0],
            "from_sub_step": from_state[1],
            "to_lifecycle": to_state[0],
            "to_sub_step": to_state[1],
            "result": result.value,
            "message": message,
            "error_code": error_code,
            "actor": actor,
            "attempts": attempts,
        },
    )


async def note(
    db: Database | Connection,
    deployment: Deployment,
    *,
    phase: str,
    message: str,
    actor: str,
    result: SchedulingResult = SchedulingResult.SUCCESS,
    error_code: str | None = None,
) -> None:
    """A history row for an operation that leaves (lifecycle, subStep) as it was."""
    state = (deployment.lifecycle, deployment.sub_step)
    await record(db, deployment.id, phase=phase, message=message, actor=actor, result=result, error_code=error_code,
                 from_state=state, to_state=state)  # fmt: skip
