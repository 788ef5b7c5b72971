"""Rollouts: deploy a revision, promote it (the blue-green switch), revert a promotion, roll back. Each is one
transaction: lock the deployment row, re-check its state, apply guarded updates, write history, notify the scheduler."""

from dataclasses import dataclass
from datetime import datetime

from databases import Database

from store import analysis, canary, governance, history, records, validation
from store.deployment_state import (
    AWAITING_PROMOTION,
    DEPLOYING,
    ROLLING_BACK,
    Projects,
    describe,
    lock_at_rest,
    lock_deployment,
    lock_routes,
    move,
    notify,
    revision_numbers,
    state_of,
)
from store.errors import Conflict, InvalidState, NotFound
from store.models import (
    LIVE_ROUTE_STATUSES,
    AnalysisPhase,
    AnalysisRunKind,
    Deployment,
    DeploymentLifecycle,
    DeploymentLifecycleSubStep,
    DeploymentStrategyType,
    Promotion,
    Revision,
    Route,
    RouteStatus,
    RouteTrafficStatus,
)
from store.queries import QUERIES


async def deploy_revision(
    db: Database,
    deployment_id: str,
    revision_id: str,
    *,
    actor: str,
    projects: Projects = None,
    break_glass: str | None = None,
) -> Deployment:
    """Start a rollout. Refused (FROZEN) while a freeze window of the project is in force, unless `break_glass`
    (an admin's reason, recorded in history)."""
    deployment_id = validation.parse_id(deployment_id, "deploymentId")
    revision_id = validation.parse_id(revision_id, "revisionId")
    async with db.transaction():
        deployment = await lock_at_rest(db, deployment_id, to="deploy again", projects=projects)
        await analysis.refuse_while_judging_a_promotion(db, deployment, to="deploy again")
        row = await db.fetch_one(QUERIES["revision_of_deployment"], {"id": revision_id, "deployment_id": deployment.id})
        if row is None:  # also another deployment's revision, which may belong to a project the caller cannot read
            raise NotFound(f"deployment {deployment.name} has no revision {revision_id}")
        revision: Revision = records.revision(row)
        if revision.id == deployment.current_revision_id:
            raise InvalidState(f"revision {revision.number} is already serving {deployment.name}; nothing to deploy")
        await governance.pass_freeze(db, deployment, await governance.of_deployment(db, deployment),
                                     to=f"deploy revision {revision.number}", actor=actor,
                                     break_glass=break_glass)  # fmt: skip
        updated_row = await db.fetch_one(QUERIES["start_rollout"], {"id": deployment.id, "revision_id": revision.id})
        assert updated_row is not None
        updated = records.deployment(updated_row)
        [current] = await revision_numbers(db, deployment.current_revision_id)
        over = f" over revision {current}" if current else " (first deploy)"
        await history.record(
            db,
            deployment.id,
            phase="deploy",
            message=f"deploying revision {revision.number} ({revision.image}){over} with {deployment.strategy.type}",
            actor=actor,
            from_state=state_of(deployment),
            to_state=state_of(updated),
        )
        await notify(db, deployment.id)
    return updated


PROMOTE = "promote"  # the step's name in history, whether a person or the scheduler's table promotes
PROMOTED = (DeploymentLifecycle.READY, None)


async def promote(
    db: Database,
    deployment_id: str,
    *,
    actor: str,
    expected_revision_id: str | None = None,
    dry_run: bool = False,
    skip_analysis: bool = False,
    full: bool = False,
    projects: Projects = None,
    break_glass: str | None = None,
) -> Promotion:
    """Switch all traffic to the green routes (SPEC §3 rules 3–5). A dry run checks and reports, writing nothing.
    With a pre-promotion analysis, only once it succeeded, unless `skip_analysis` (recorded in history).
    A canary resumes from its pause instead, or with `full` skips its remaining steps (store/canary.py).
    Governance (SPEC §8): refused (FROZEN) during a freeze window unless `break_glass`, and (INVALID_STATE) until the
    rollout has its required approvals."""
    deployment_id = validation.parse_id(deployment_id, "deploymentId")
    if expected_revision_id is not None:
        expected_revision_id = validation.parse_id(expected_revision_id, "expectedRevisionId")
    async with db.transaction():
        deployment = await lock_deployment(db, deployment_id, projects=projects)
        routes = await lock_routes(db, deployment.id)
        if deployment.strategy.type is DeploymentStrategyType.CANARY:
            if deployment.lifecycle is DEPLOYING:  # else resume says what state it would need
                rules = await governance.of_deployment(db, deployment)
                await governance.pass_freeze(db, deployment, rules, to="promote", actor=actor,
                                             break_glass=break_glass, record=not dry_run)  # fmt: skip
                governance.check_approvals(deployment, rules)
            return await canary.resume(db, deployment, routes, full=full, actor=actor,
                                       expected_revision_id=expected_revision_id, dry_run=dry_run)  # fmt: skip
        promoted, drained = check_promotion(deployment, routes, expected_revision_id=expected_revision_id)
        rules = await governance.of_deployment(db, deployment)
        await governance.pass_freeze(db, deployment, rules, to="promote", actor=actor, break_glass=break_glass,
                                     record=not dry_run)  # fmt: skip
        governance.check_approvals(deployment, rules)
        pending = await pending_analysis(db, deployment)
        if pending is not None and not skip_analysis:
            raise InvalidState(
                f"deployment {deployment.name}: {pending}; wait for it to succeed, or promote with skipAnalysis: true"
            )
        if dry_run:
            return Promotion(deployment, promoted, drained, dry_run=True)
        if pending is not None:
            await analysis.stop(db, deployment, AnalysisRunKind.PRE_PROMOTION,
                                why=f"{actor} promoted with skipAnalysis", actor=actor)  # fmt: skip
        note = f" (skipping the pre-promotion analysis: {pending})" if pending is not None else ""
        return await promote_locked(db, deployment, routes, actor=actor, note=note)


async def pending_analysis(db: Database, deployment: Deployment) -> str | None:
    """Why the pre-promotion analysis does not let this deployment be promoted yet, or None."""
    spec = deployment.strategy.blue_green_spec.pre_promotion_analysis
    if spec is None:
        return None
    runs = await analysis.runs_of_rollout(db, deployment)
    run = runs.get(AnalysisRunKind.PRE_PROMOTION)
    if run is None:
        return "its pre-promotion analysis has not started yet"
    if run.phase is AnalysisPhase.SUCCESSFUL:
        return None
    return (
        f"its pre-promotion analysis is {run.phase} ({run.passed + run.failed} of {run.spec.count} checks, "
        f"{run.failed} failed)"
    )


async def promote_locked(
    db: Database,
    deployment: Deployment,
    routes: list[Route],
    *,
    actor: str,
    to_state: tuple[DeploymentLifecycle, DeploymentLifecycleSubStep | None] = PROMOTED,
    phase: str = PROMOTE,
    note: str = "",
) -> Promotion:
    """The promotion, for a caller that holds the deployment's and its routes' locks in this transaction (`promote`,
    or the scheduler's table, which names the target state and the step): the traffic switch, the move with its
    history row, and the post-promotion analysis when there is a previous revision to revert to."""
    switch = await switch_traffic(db, deployment, routes)
    updated = await move(
        db,
        deployment,
        to_state,
        phase=phase,
        message=switch.message + note,
        actor=actor,
        swap=True,
        next_check_now=False,
        next_check_at=switch.scale_down_at,
    )
    await analysis.next_epoch(db, updated)
    post = updated.strategy.blue_green_spec.post_promotion_analysis
    if post is not None and switch.drained and updated.current_revision_id is not None:
        await analysis.start(db, updated, AnalysisRunKind.POST_PROMOTION, post, updated.current_revision_id,
                             actor=actor)  # fmt: skip
    return Promotion(updated, switch.promoted, switch.drained, dry_run=False)


def check_promotion(
    deployment: Deployment, routes: list[Route], *, expected_revision_id: str | None = None
) -> tuple[list[Route], list[Route]]:
    """Refuse a promotion the deployment is not ready for; else the green routes it promotes and the blue routes it
    drains."""
    if deployment.strategy.type is not DeploymentStrategyType.BLUE_GREEN:
        raise InvalidState(
            f"deployment {deployment.name} uses the {deployment.strategy.type} strategy: its new routes take "
            "traffic as they become healthy, so there is nothing to promote"
        )
    if (deployment.lifecycle, deployment.sub_step) != (DEPLOYING, AWAITING_PROMOTION):
        raise InvalidState(f"{describe(deployment)}: only a deployment awaiting promotion can be promoted")
    if expected_revision_id is not None and expected_revision_id != deployment.deploying_revision_id:
        raise Conflict(
            f"deployment {deployment.name} is deploying revision {deployment.deploying_revision_id}, "
            f"not the expected {expected_revision_id}; re-read it and decide again"
        )
    green = [r for r in routes if r.revision_id == deployment.deploying_revision_id]
    healthy_green = [r for r in green if r.status is RouteStatus.HEALTHY]
    if len(healthy_green) < deployment.replicas:
        raise InvalidState(
            f"deployment {deployment.name} has {len(healthy_green)} of {deployment.replicas} green routes "
            "HEALTHY; wait until all are healthy before promoting"
        )
    blue = [
        r
        for r in routes
        if r.revision_id != deployment.deploying_revision_id
        and (r.status in LIVE_ROUTE_STATUSES or r.traffic_status is RouteTrafficStatus.ACTIVE)
    ]
    return healthy_green[: deployment.replicas], blue


@dataclass(frozen=True)
class Switch:
    """The route changes of a promotion, made; the state change is the caller's (`promote`, or the scheduler's
    transition table)."""

    promoted: list[Route]
    drained: list[Route]
    message: str  # for the history row: from which revision to which, how many routes
    scale_down_at: datetime | None  # when the scheduler drains the blue routes kept warm


async def switch_traffic(
    db: Database, deployment: Deployment, routes: list[Route], *, expected_revision_id: str | None = None
) -> Switch:
    """The traffic switch, for a caller that holds the deployment's and its routes' locks in this transaction (the
    scheduler's claim, or `promote`): re-check, then green takes all traffic and blue is kept warm without any."""
    promoted, blue = check_promotion(deployment, routes, expected_revision_id=expected_revision_id)
    promoted_ids = {r.id for r in promoted}
    green = [r for r in routes if r.revision_id == deployment.deploying_revision_id]
    spare_green = [r for r in green if r.id not in promoted_ids and r.status is not RouteStatus.TERMINATING]
    rows = await db.fetch_all(
        QUERIES["switch_routes"],
        {
            "ids": [r.id for r in promoted],
            "ratio": 1.0 / len(promoted),
            "drain_ids": [r.id for r in blue],
            "delay": float(deployment.strategy.blue_green_spec.scale_down_delay_seconds),
            "new_revision_id": deployment.deploying_revision_id,
            "old_revision_id": deployment.current_revision_id,
        },
    )
    promoted_rows = [row for row in rows if row["is_promoted"]]
    drained_rows = [row for row in rows if not row["is_promoted"]]
    if spare_green:
        await db.fetch_all(QUERIES["terminate_routes"], {"ids": [r.id for r in spare_green]})
    # At least one route is promoted (replicas >= 1), so there is a row to carry the numbers.
    new_number, old_number = rows[0]["new_revision_number"], rows[0]["old_revision_number"]
    over = f" over revision {old_number}" if old_number else " (first deploy)"
    delay = deployment.strategy.blue_green_spec.scale_down_delay_seconds
    return Switch(
        promoted=sorted(map(records.route, promoted_rows), key=lambda r: r.seq),
        drained=sorted(map(records.route, drained_rows), key=lambda r: r.seq),
        message=f"promoted revision {new_number}{over}: {len(promoted)} routes active, {len(blue)} draining"
        + (f" after {delay} s" if blue else ""),
        scale_down_at=min((row["terminate_after"] for row in drained_rows), default=None),
    )


async def revert_promotion(
    db: Database, deployment_id: str, *, actor: str, reason: str | None = None, projects: Projects = None
) -> Deployment:
    """Undo the last promotion in one transaction: the previous revision's routes, still kept warm, take all traffic
    again and it becomes current; the routes just promoted are kept warm in turn (so the revert can be reverted)."""
    deployment_id = validation.parse_id(deployment_id, "deploymentId")
    if reason is not None:
        validation.check_text(reason, "reason", 1000)
    async with db.transaction():
        deployment = await lock_deployment(db, deployment_id, projects=projects)
        routes = await lock_routes(db, deployment.id)
        return await revert_traffic(db, deployment, routes, actor=actor, reason=reason)


def previous_routes(deployment: Deployment, routes: list[Route]) -> list[Route]:
    """The routes a revert would give all traffic back to: `replicas` healthy routes of the one previous revision,
    still kept warm; empty when there are not enough (the scale-down delay has passed)."""
    warm = [
        r
        for r in routes
        if r.terminate_after is not None
        and r.revision_id != deployment.current_revision_id
        and r.status is RouteStatus.HEALTHY
    ]
    if len({r.revision_id for r in warm}) != 1 or len(warm) < deployment.replicas:
        return []
    return warm[: deployment.replicas]


async def revert_traffic(
    db: Database, deployment: Deployment, routes: list[Route], *, actor: str, reason: str | None = None
) -> Deployment:
    """The revert, for a caller that holds the deployment's and its routes' locks in this transaction (a person's
    `revertPromotion`, or the scheduler after a failed post-promotion analysis)."""
    if deployment.lifecycle is not DeploymentLifecycle.READY:
        raise InvalidState(f"{describe(deployment)}: only a READY deployment has a promotion to revert")
    back = previous_routes(deployment, routes)
    if not back:
        warm = [r for r in routes if r.terminate_after is not None and r.status is RouteStatus.HEALTHY]
        raise InvalidState(
            f"deployment {deployment.name} has {len(warm)} healthy route(s) of its previous revision left, "
            f"{deployment.replicas} needed: the scale-down delay has passed, roll out that revision again instead"
        )
    previous_revision = back[0].revision_id
    serving = [r for r in routes if r.traffic_status is RouteTrafficStatus.ACTIVE]
    await analysis.stop(db, deployment, AnalysisRunKind.POST_PROMOTION, why=f"the promotion was reverted by {actor}",
                        actor=actor)  # fmt: skip
    await db.fetch_all(QUERIES["route_traffic"], {"ids": [r.id for r in back], "ratio": 1.0 / len(back)})
    kept = await db.fetch_all(
        QUERIES["keep_warm_without_traffic"],
        {
            "ids": [r.id for r in serving],
            "delay": float(deployment.strategy.blue_green_spec.scale_down_delay_seconds),
        },
    )
    drain_at = min((row["terminate_after"] for row in kept), default=None)
    row = await db.fetch_one(
        QUERIES["set_current_revision"],
        {"id": deployment.id, "revision_id": previous_revision, "next_check_at": drain_at},
    )
    assert row is not None
    reverted, restored = await revision_numbers(db, deployment.current_revision_id, previous_revision)
    await history.note(
        db,
        deployment,
        phase="revert",
        message=f"reverted the promotion of revision {reverted}: revision {restored} serves again "
        f"({len(back)} routes active, {len(kept)} kept warm)" + (f": {reason}" if reason else ""),
        actor=actor,
    )
    await notify(db, deployment.id)
    return records.deployment(row)


async def begin_rollback(
    db: Database, deployment_id: str, *, actor: str, reason: str | None = None, projects: Projects = None
) -> Deployment:
    """Abort the rollout in flight; the scheduler then stops the new routes and restores the old revision."""
    deployment_id = validation.parse_id(deployment_id, "deploymentId")
    if reason is not None:
        validation.check_text(reason, "reason", 1000)
    async with db.transaction():
        deployment = await lock_deployment(db, deployment_id, projects=projects)
        if deployment.lifecycle is not DEPLOYING:
            raise InvalidState(f"{describe(deployment)}: only a rollout in flight can be rolled back")
        if deployment.sub_step is ROLLING_BACK:
            raise InvalidState(f"{describe(deployment)}: it is already rolling back")
        [number] = await revision_numbers(db, deployment.deploying_revision_id)
        back = ""
        if deployment.strategy.type is DeploymentStrategyType.CANARY:  # the traffic goes back with the request
            back = await canary.put_traffic_back(db, deployment, await lock_routes(db, deployment.id), actor=actor)
        updated = await move(
            db,
            deployment,
            (DEPLOYING, ROLLING_BACK),
            phase="rollback",
            message=f"rollback of revision {number} requested" + (f": {reason}" if reason else "") + back,
            actor=actor,
        )
    return updated
