"""What the scheduler asks of the store: claim one due deployment, apply route changes, move on or wait."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from databases import Database

from store import analysis, deployment_state, governance, history, records
from store.models import (
    UNGOVERNED,
    AnalysisRun,
    AnalysisRunKind,
    Deployment,
    DeploymentLifecycleSubStep,
    Governance,
    Route,
    SchedulingResult,
)
from store.queries import QUERIES


@dataclass
class Claim:
    deployment: Deployment
    routes: list[Route]
    now: datetime
    # The newest analysis run of each kind of the revision a run would judge (read only when the strategy has one).
    runs: dict[AnalysisRunKind, AnalysisRun] = field(default_factory=dict)
    # Approvals and the freeze window in force (SPEC §8); read only in the states they can hold (GOVERNED).
    governance: Governance = UNGOVERNED


# Where governance holds a rollout: awaiting promotion, and a canary stepping forward.
GOVERNED = frozenset(
    {DeploymentLifecycleSubStep.DEPLOYING_AWAITING_PROMOTION, DeploymentLifecycleSubStep.DEPLOYING_PROGRESSING}
)


async def _claim(db: Database, row: Any) -> Claim:
    deployment = records.deployment(row)
    routes = await deployment_state.lock_routes(db, deployment.id)
    runs = await analysis.runs_of_rollout(db, deployment)
    rules = UNGOVERNED
    if deployment.sub_step in GOVERNED:
        rules = await governance.of_deployment(db, deployment)
    return Claim(deployment, routes, row["database_now"], runs, rules)


async def claim_due(db: Database) -> Claim | None:
    """Lock one deployment whose check is due (skipping those another scheduler holds), with its routes.

    Call inside a transaction: the lock lasts until it ends.
    """
    row = await db.fetch_one(QUERIES["claim_due_deployment"])
    return None if row is None else await _claim(db, row)


async def claim(db: Database, deployment_id: str) -> Claim | None:
    """Lock this deployment unless another scheduler holds it (then None)."""
    row = await db.fetch_one(QUERIES["lock_deployment_if_free"], {"id": deployment_id})
    return None if row is None else await _claim(db, row)


async def change_routes(
    db: Database,
    deployment: Deployment,
    *,
    create: int = 0,
    revision_id: str | None = None,
    terminate: tuple[str, ...] = (),
    traffic: tuple[str, ...] = (),
) -> None:
    """Stop routes, start new ones, and share the traffic equally among `traffic` (all others get none)."""
    if terminate:
        await db.fetch_all(QUERIES["terminate_routes"], {"ids": list(terminate)})
    if create:
        assert revision_id is not None
        await db.fetch_all(
            QUERIES["create_routes"], {"deployment_id": deployment.id, "revision_id": revision_id, "count": create}
        )
    if traffic:
        await db.fetch_all(QUERIES["route_traffic"], {"ids": list(traffic), "ratio": 1.0 / len(traffic)})
        await db.fetch_all(QUERIES["withdraw_traffic_except"], {"deployment_id": deployment.id, "ids": list(traffic)})
    if terminate or traffic:
        # A rolling step or a scale-down moves traffic without a state move: data planes follow it now, not at their
        # next poll.
        await deployment_state.notify(db, deployment.id)


async def wait(db: Database, deployment: Deployment, *, until: datetime | None) -> None:
    await db.execute(QUERIES["schedule_check"], {"id": deployment.id, "next_check_at": until})


async def count_retry(
    db: Database,
    deployment: Deployment,
    *,
    phase: str,
    message: str,
    error_code: str | None,
    actor: str,
    retry_at: datetime | None,
) -> int:
    """Stay, attempts + 1; retries of one phase merge into one history row."""
    attempts = await db.fetch_val(QUERIES["count_retry"], {"id": deployment.id, "next_check_at": retry_at})
    latest = await db.fetch_one(
        QUERIES["retry_of_this_phase"],
        {"deployment_id": deployment.id, "phase": phase, "since": deployment.phase_started_at},
    )
    message = f"{message} (attempt {attempts} of {deployment.strategy.max_retries})"
    if latest is not None:
        await db.execute(
            QUERIES["merge_retry_into_history"],
            {"id": latest["id"], "attempts": attempts, "message": message, "error_code": error_code},
        )
    else:
        state = (deployment.lifecycle, deployment.sub_step)
        await history.record(
            db,
            deployment.id,
            phase=phase,
            message=message,
            actor=actor,
            result=SchedulingResult.NEED_RETRY,
            from_state=state,
            to_state=state,
            error_code=error_code,
            attempts=attempts,
        )
    return attempts


def backoff(now: datetime, attempts: int) -> datetime:
    """When to try a failed step again: 1, 2, 4 … seconds, at most 30."""
    return now + timedelta(seconds=min(30, 2 ** max(0, attempts - 1)))
