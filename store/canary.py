"""Canary rollouts in the store (SPEC §6): enter a step (with its weight change, its history row and the analysis it
starts, in the caller's one transaction), put all traffic back on the current revision, resume a pause. Callers hold
the deployment's lock and then its routes' (lock order as everywhere)."""

from collections.abc import Sequence

from databases import Database

from store import analysis
from store.deployment_state import AWAITING_PROMOTION, DEPLOYING, describe, move, revision_numbers
from store.errors import Conflict, InvalidState
from store.models import (
    LIVE_ROUTE_STATUSES,
    AnalysisRunKind,
    Deployment,
    DeploymentLifecycle,
    DeploymentLifecycleSubStep,
    Promotion,
    Route,
    RouteStatus,
    SchedulingResult,
)
from store.queries import QUERIES

PHASE = "canary"  # the history phase of every canary step
PROGRESSING = DeploymentLifecycleSubStep.DEPLOYING_PROGRESSING
SERVING = frozenset({RouteStatus.HEALTHY, RouteStatus.DEGRADED})
State = tuple[DeploymentLifecycle, DeploymentLifecycleSubStep | None]
Ratios = Sequence[tuple[str, float]]  # route id, share of the deployment's traffic


async def set_ratios(db: Database, deployment: Deployment, ratios: Ratios) -> None:
    """These routes take these shares (adding up to 1), every other route of the deployment none."""
    await db.execute(
        QUERIES["set_route_ratios"],
        {"deployment_id": deployment.id, "ids": [i for i, _ in ratios], "ratios": [r for _, r in ratios]},
    )


async def _set_position(db: Database, deployment: Deployment, step_index: int | None, weight: int | None) -> None:
    await db.execute(QUERIES["set_canary_position"], {"id": deployment.id, "step_index": step_index, "weight": weight})


async def _stop_runs(db: Database, deployment: Deployment, *, why: str, actor: str) -> None:
    for kind in (AnalysisRunKind.CANARY_STEP, AnalysisRunKind.BACKGROUND):
        await analysis.stop(db, deployment, kind, why=why, actor=actor)


async def enter_step(
    db: Database,
    deployment: Deployment,
    routes: Sequence[Route],
    to_state: State,
    *,
    step_index: int,
    weight: int,
    phase: str,
    message: str,
    actor: str,
    result: SchedulingResult = SchedulingResult.SUCCESS,
) -> Deployment:
    """Move a canary rollout on to step `step_index` at `weight` (the routes' shares are the caller's, in this
    transaction): its history row, and the analysis that step (or, at the first step, the background) runs. READY is
    the end: the deploying revision becomes current and the old routes stay warm, without traffic, for the
    canary's `scaleDownDelaySeconds`."""
    spec = deployment.strategy.canary_spec
    if to_state[0] is DeploymentLifecycle.READY:
        await analysis.stop(db, deployment, AnalysisRunKind.CANARY_STEP, why="the rollout ended", actor=actor)
        await analysis.complete(db, deployment, AnalysisRunKind.BACKGROUND, actor=actor)
        old = [
            r for r in routes if r.revision_id != deployment.deploying_revision_id and r.status in LIVE_ROUTE_STATUSES
        ]
        kept = await db.fetch_all(
            QUERIES["keep_warm_without_traffic"],
            {"ids": [r.id for r in old], "delay": float(spec.scale_down_delay_seconds)},
        )
        await _set_position(db, deployment, None, None)
        drain_at = min((row["terminate_after"] for row in kept), default=None)
        suffix = f"; {len(kept)} old route(s) drain after {spec.scale_down_delay_seconds} s" if kept else ""
        return await move(db, deployment, to_state, phase=phase, message=message + suffix, actor=actor, result=result,
                          swap=True, next_check_now=False, next_check_at=drain_at)  # fmt: skip
    await _set_position(db, deployment, step_index, weight)
    updated = await move(db, deployment, to_state, phase=phase, message=message, actor=actor, result=result)
    assert updated.deploying_revision_id is not None
    if deployment.sub_step is DeploymentLifecycleSubStep.DEPLOYING_PROVISIONING and spec.analysis is not None:
        await analysis.start(db, updated, AnalysisRunKind.BACKGROUND, spec.analysis, updated.deploying_revision_id,
                             actor=actor)  # fmt: skip
    step_analysis = spec.step(step_index).analysis
    if step_analysis is not None:
        await analysis.start(db, updated, AnalysisRunKind.CANARY_STEP, step_analysis, updated.deploying_revision_id,
                             actor=actor)  # fmt: skip
    return updated


async def put_traffic_back(db: Database, deployment: Deployment, routes: Sequence[Route], *, actor: str) -> str:
    """A canary being rolled back: all traffic on the current revision's serving routes at once, the canary's runs
    stopped, no step in progress. Returns what it did, for the rollback's history row."""
    await _stop_runs(db, deployment, why="the rollout is rolled back", actor=actor)
    await _set_position(db, deployment, None, None)
    current = [
        r
        for r in routes
        if r.revision_id == deployment.current_revision_id and r.status in SERVING and r.terminate_after is None
    ]
    if deployment.current_revision_id is None or not current:
        return ""  # nothing serves to take it back (a first deploy has given the new revision no traffic)
    await set_ratios(db, deployment, [(r.id, 1.0 / len(current)) for r in current])
    [number] = await revision_numbers(db, deployment.current_revision_id)
    return f"; 100 % back on revision {number} ({len(current)} routes)"


async def resume(
    db: Database,
    deployment: Deployment,
    routes: Sequence[Route],
    *,
    full: bool,
    actor: str,
    expected_revision_id: str | None = None,
    dry_run: bool = False,
) -> Promotion:
    """`promoteDeployment` of a canary: end the pause it waits in (the next step starts), or with `full` skip every
    remaining step (also while one runs) to the final 100 %, which the scheduler then reaches."""
    if deployment.lifecycle is not DEPLOYING or not (
        deployment.sub_step is AWAITING_PROMOTION or (full and deployment.sub_step is PROGRESSING)
    ):
        raise InvalidState(
            f"{describe(deployment)}: a canary is promoted while it pauses (DEPLOYING_AWAITING_PROMOTION), "
            "or with full: true while it steps"
        )
    if expected_revision_id is not None and expected_revision_id != deployment.deploying_revision_id:
        raise Conflict(
            f"deployment {deployment.name} is deploying revision {deployment.deploying_revision_id}, "
            f"not the expected {expected_revision_id}; re-read it and decide again"
        )
    if dry_run:
        return Promotion(deployment, [], [], dry_run=True)
    spec = deployment.strategy.canary_spec
    index = deployment.canary_step_index or 0
    weight = deployment.canary_weight or 0
    if full:
        await analysis.stop(db, deployment, AnalysisRunKind.CANARY_STEP, why=f"{actor} promoted fully", actor=actor)
        next_index, to_state = len(spec.steps), spec.state_at(len(spec.steps))
        message = f"full promotion: steps {index + 1}–{len(spec.steps)} skipped, going to 100 % from {weight} %"
    else:
        next_index, to_state = index + 1, spec.state_after(index)
        message = f"pause of step {index + 1} of {len(spec.steps)} ended at {weight} %"
    updated = await enter_step(db, deployment, routes, to_state, step_index=next_index, weight=weight,
                               phase=PHASE, message=message, actor=actor)  # fmt: skip
    return Promotion(updated, [], [], dry_run=False)
