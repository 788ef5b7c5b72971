"""One pass of the scheduler: handle every due deployment, each in its own transaction.

`run_once` is what tests call; the scheduler process is a loop around it.
"""

import asyncio
import logging

from databases import Database
from opentelemetry.trace import Tracer

from scheduler import analysis, webhooks
from scheduler.decisions import Decision, Outcome
from scheduler.providers import Providers
from scheduler.table import IDLE, Transition, transition_for
from store import analysis as analysis_store
from store import canary, deployment_state, history, rollouts, scheduling
from store.errors import StoreError
from store.models import AnalysisRunKind, Deployment, SchedulingResult
from switchover.tracing import deployment_step

log = logging.getLogger("switchover.scheduler")

ACTOR = "scheduler"


async def run_once(
    db: Database,
    *,
    max_steps: int = 10_000,
    workers: int = 1,
    stop: asyncio.Event | None = None,
    providers: Providers | None = None,
    tracer: Tracer | None = None,
    deliveries: bool = True,
) -> int:
    """Handle due deployments, due analysis checks and (with `deliveries`) due webhook deliveries until none is due
    (or `max_steps`, or `stop`); returns how many steps ran.

    With several `workers`, steps run side by side on their own connections; `SKIP LOCKED` keeps them on different
    deployments (and checks). Each step runs in a task of its own: `databases` binds a connection to the task that
    used it, and a step that failed on a dead connection must not leave a long-lived task holding that connection.
    Without `providers`, checks are measured (and webhooks posted) with a client made for this pass (no Prometheus,
    no loopback URLs). With a `tracer`, each claimed deployment's step is a span. The scheduler process passes
    `deliveries=False` and runs `deliver_once` in a loop of its own: a slow webhook receiver never holds up a pass.
    """
    steps = 0
    own = providers is None
    measuring = providers or Providers()

    async def work() -> None:
        nonlocal steps
        while steps < max_steps and not (stop and stop.is_set()):
            stepped = await asyncio.create_task(step(db, tracer))
            checked = await asyncio.create_task(analysis.step(db, measuring))
            if not (stepped or checked):
                return
            steps += stepped + checked

    async def deliver() -> None:
        nonlocal steps
        steps += await deliver_once(db, workers=workers, stop=stop, providers=measuring)

    try:
        await asyncio.gather(*(work() for _ in range(workers)), *([deliver()] if deliveries else []))
    finally:
        if own:
            await measuring.aclose()
    return steps


async def deliver_once(
    db: Database, *, providers: Providers, workers: int = 1, stop: asyncio.Event | None = None
) -> int:
    """Post due webhook deliveries until none is due (or `stop`); returns how many were attempted."""
    sent = 0

    async def deliver() -> None:
        nonlocal sent
        while not (stop and stop.is_set()):
            if not await asyncio.create_task(webhooks.step(db, providers)):
                return
            sent += 1

    await asyncio.gather(*(deliver() for _ in range(workers)))
    return sent


async def step(db: Database, tracer: Tracer | None = None) -> bool:
    """Claim one due deployment, decide and apply in one transaction. False when nothing is due."""
    claimed: Deployment | None = None
    try:
        async with db.transaction():
            claim = await scheduling.claim_due(db)
            if claim is None:
                return False
            claimed = claim.deployment
            with deployment_step(tracer, claim.deployment):  # from the claim on: an idle poll makes no span
                transition = transition_for(claim.deployment)
                if transition is None:
                    if (claim.deployment.lifecycle, claim.deployment.sub_step) not in IDLE:
                        log.error("deployment %s is in a state without a handler", claim.deployment.id)
                    await scheduling.wait(db, claim.deployment, until=None)
                    return True
                decision = transition.handler(claim.deployment, claim.routes, claim.now, claim.runs, claim.governance)
                await apply(db, claim, transition, decision)
        return True
    except Exception as exc:
        if claimed is None:
            raise  # the claim itself failed: the database is unreachable, let the loop back off
        log.exception("handling deployment %s failed", claimed.id)
        await record_failure(db, claimed, exc)
        return True


async def apply(db: Database, claim: scheduling.Claim, transition: Transition, decision: Decision) -> None:
    deployment = claim.deployment
    actions = decision.actions
    outcome = decision.outcome
    if outcome is Outcome.NEED_RETRY and deployment.attempts >= deployment.strategy.max_retries:
        outcome = Outcome.GIVE_UP
    if actions.revert:  # alone: the revert moves traffic itself, under the claim's locks
        await rollouts.revert_traffic(db, deployment, claim.routes, actor=analysis.ACTOR, reason=decision.message)
        return
    if actions.cannot_revert:  # said once: the next epoch no longer judges that run
        await history.note(
            db,
            deployment,
            phase=analysis_store.PHASE,
            message=decision.message,
            actor=analysis.ACTOR,
            result=SchedulingResult.GIVE_UP,
            error_code=decision.error_code,
        )
        await analysis_store.next_epoch(db, deployment)
        await scheduling.wait(db, deployment, until=claim.now)  # then drain as usual
        return
    if outcome is not Outcome.GIVE_UP:
        await scheduling.change_routes(
            db,
            deployment,
            create=actions.create_routes,
            revision_id=actions.create_revision_id,
            terminate=actions.terminate,
            traffic=actions.traffic,
        )
        if actions.ratios:
            await canary.set_ratios(db, deployment, actions.ratios)
    if actions.start_analysis is not None:
        await start_analysis(db, deployment, actions.start_analysis)

    if outcome is Outcome.WAIT:
        if actions:
            await history.note(db, deployment, phase=transition.phase, message=decision.message, actor=ACTOR)
        await scheduling.wait(db, deployment, until=decision.recheck_at)
    elif outcome is Outcome.NEED_RETRY:
        await scheduling.count_retry(
            db,
            deployment,
            phase=transition.phase,
            message=decision.message,
            error_code=decision.error_code,
            actor=ACTOR,
            retry_at=claim.now if actions else decision.recheck_at,
        )
    else:
        target = transition.target(outcome)
        to_state = target.resolve(deployment)
        message = decision.message
        if outcome is Outcome.GIVE_UP and decision.outcome is Outcome.NEED_RETRY:
            message = f"gave up after {deployment.attempts} retries: {decision.message}"
        if outcome is Outcome.SUCCESS and actions.promote:
            assert to_state is not None  # the promotion's target is the table's, like every other transition's
            # Under the locks of the claim (no route changed since it was taken).
            await rollouts.promote_locked(db, deployment, claim.routes, actor=ACTOR, to_state=to_state,
                                          phase=transition.phase)  # fmt: skip
        elif outcome is Outcome.SUCCESS and actions.canary is not None:
            assert to_state is not None  # the next step's state is the table's (CanaryNext)
            await canary.enter_step(db, deployment, claim.routes, to_state, step_index=actions.canary.step_index,
                                    weight=actions.canary.weight, phase=transition.phase, message=message,
                                    actor=ACTOR)  # fmt: skip
        elif to_state is None:
            await history.note(db, deployment, phase=transition.phase, message=message, actor=ACTOR)
            await scheduling.wait(db, deployment, until=decision.recheck_at)
        else:
            if target.traffic_back:
                message += await canary.put_traffic_back(db, deployment, claim.routes, actor=ACTOR)
            await deployment_state.move(
                db,
                deployment,
                to_state,
                swap=target.swap,
                phase=transition.phase,
                message=message,
                result=outcome.value,
                error_code=decision.error_code,
                actor=ACTOR,
            )


async def start_analysis(db: Database, deployment: Deployment, kind: AnalysisRunKind) -> None:
    """A run of the deployment's own spec of that kind, on the revision it judges."""
    spec = deployment.strategy.blue_green_spec
    if kind is AnalysisRunKind.PRE_PROMOTION and spec.pre_promotion_analysis is not None:
        assert deployment.deploying_revision_id is not None
        await analysis_store.start(db, deployment, kind, spec.pre_promotion_analysis,
                                   deployment.deploying_revision_id, actor=ACTOR)  # fmt: skip
    step = deployment.strategy.canary_spec.step(deployment.canary_step_index or 0)
    if kind is AnalysisRunKind.CANARY_STEP and step.analysis is not None:
        assert deployment.deploying_revision_id is not None
        await analysis_store.start(db, deployment, kind, step.analysis, deployment.deploying_revision_id,
                                   actor=ACTOR)  # fmt: skip


async def record_failure(db: Database, deployment: Deployment, exc: Exception) -> None:
    """A handler or its changes failed and were rolled back: count a retry (or give up) in a new transaction."""
    code = exc.code if isinstance(exc, StoreError) else "HANDLER_ERROR"
    async with db.transaction():
        claim = await scheduling.claim(db, deployment.id)
        if claim is None or (
            claim.deployment.lifecycle,
            claim.deployment.sub_step,
            claim.deployment.phase_started_at,
        ) != (
            deployment.lifecycle,
            deployment.sub_step,
            deployment.phase_started_at,
        ):
            return  # another scheduler holds it, or it moved on meanwhile: the failure belongs to a past phase
        transition = transition_for(claim.deployment)
        if transition is None:
            return
        retry_at = scheduling.backoff(claim.now, claim.deployment.attempts + 1)
        message = f"{type(exc).__name__}: {exc}"[:500]
        await apply(db, claim, transition, Decision(Outcome.NEED_RETRY, message, recheck_at=retry_at, error_code=code))
