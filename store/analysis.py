"""Analysis runs in the store: start one (inside the deployment's transaction), claim a due check, record what it
measured, end a run a person skipped. The decisions are the scheduler's (scheduler/analysis.py); this module only
applies them, each in one transaction that locks the deployment row before the run's.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from databases import Database

from store import history, records
from store.deployment_state import lock_deployment, notify, revision_numbers
from store.errors import Conflict
from store.models import (
    AnalysisPhase,
    AnalysisRun,
    AnalysisRunKind,
    AnalysisSpec,
    Deployment,
    MetricCheck,
    SchedulingResult,
)
from store.queries import QUERIES

PHASE = "analysis"  # the history phase of everything analysis does
LEASE_SECONDS = 30  # longer than any measurement may take (providers are bounded well below it)
WORDS = {
    AnalysisRunKind.PRE_PROMOTION: "pre-promotion analysis",
    AnalysisRunKind.POST_PROMOTION: "post-promotion analysis",
    AnalysisRunKind.CANARY_STEP: "canary step analysis",
    AnalysisRunKind.BACKGROUND: "background analysis",
}


def analyses(deployment: Deployment) -> bool:
    """Whether the deployment's strategy runs any analysis: when not, nobody needs to read its runs."""
    bg, canary = deployment.strategy.blue_green_spec, deployment.strategy.canary
    return (
        bg.pre_promotion_analysis is not None
        or bg.post_promotion_analysis is not None
        or (canary is not None and (canary.analysis is not None or any(s.analysis is not None for s in canary.steps)))
    )


async def start(
    db: Database, deployment: Deployment, kind: AnalysisRunKind, spec: AnalysisSpec, revision_id: str, *, actor: str
) -> AnalysisRun:
    """Start a run of `spec` on a revision of a deployment locked in this transaction; a run of the same kind still
    in progress ends (ERROR: it no longer applies)."""
    await db.fetch_all(QUERIES["end_running_analysis"], {"deployment_id": deployment.id, "kind": kind.value})
    row = await db.fetch_one(
        QUERIES["insert_analysis_run"],
        {
            "deployment_id": deployment.id,
            "revision_id": revision_id,
            "kind": kind.value,
            "spec": records.analysis_spec_json(spec),
            "delay_seconds": float(spec.initial_delay_seconds),
        },
    )
    assert row is not None
    [number] = await revision_numbers(db, revision_id)
    names = ", ".join(m.name for m in spec.metrics)
    await history.note(
        db,
        deployment,
        phase=PHASE,
        message=f"{WORDS[kind]} of revision {number} started: {spec.count} checks of {names}, "
        f"every {spec.interval_seconds} s, at most {spec.failure_limit} failed",
        actor=actor,
    )
    return records.analysis_run(row)


async def stop(db: Database, deployment: Deployment, kind: AnalysisRunKind, *, why: str, actor: str) -> None:
    """End the run of `kind` in progress, if any (a promotion that skipped it, a revert): ERROR, with a history row
    that says why. Inside the deployment's transaction."""
    rows = await db.fetch_all(QUERIES["end_running_analysis"], {"deployment_id": deployment.id, "kind": kind.value})
    for row in rows:
        [number] = await revision_numbers(db, str(row["revision_id"]))
        await history.note(
            db,
            deployment,
            phase=PHASE,
            message=f"{WORDS[kind]} of revision {number} stopped before it ended: {why}",
            actor=actor,
            result=SchedulingResult.SKIPPED,
        )


async def complete(db: Database, deployment: Deployment, kind: AnalysisRunKind, *, actor: str) -> None:
    """End the run of `kind` in progress, if any, as SUCCESSFUL: the rollout it watched ended and it never failed
    (a failure would have ended it, and the rollout, already). Inside the deployment's transaction."""
    rows = await db.fetch_all(
        QUERIES["complete_running_analysis"], {"deployment_id": deployment.id, "kind": kind.value}
    )
    for run in map(records.analysis_run, rows):
        [number] = await revision_numbers(db, run.revision_id)
        await history.note(
            db,
            deployment,
            phase=PHASE,
            message=f"{WORDS[kind]} of revision {number} ended with the rollout: SUCCESSFUL "
            f"({run.passed + run.failed} checks, {run.failed} failed)",
            actor=actor,
        )


async def runs_of_rollout(db: Database, deployment: Deployment) -> dict[AnalysisRunKind, AnalysisRun]:
    """The newest run of each kind the deployment's current rollout epoch started (a deploy, a promotion, a revert
    each begin one): a run of an earlier attempt never decides this one. Empty when the strategy analyses nothing."""
    if not analyses(deployment):
        return {}
    rows = await db.fetch_all(QUERIES["analysis_runs_of_epoch"], {"deployment_id": deployment.id})
    return {run.kind: run for run in map(records.analysis_run, rows)}


async def refuse_while_judging_a_promotion(db: Database, deployment: Deployment, *, to: str) -> None:
    """CONFLICT while a post-promotion analysis runs (SPEC §6): a new rollout, a new size or strategy would drain
    the routes its revert needs, or judge something else than the promotion. `to` says what the caller wanted."""
    run = (await runs_of_rollout(db, deployment)).get(AnalysisRunKind.POST_PROMOTION)
    if run is not None and run.phase is AnalysisPhase.RUNNING:
        raise Conflict(
            f"deployment {deployment.name} is judging its last promotion (post-promotion analysis, "
            f"{run.passed + run.failed} of {run.spec.count} checks): wait for it, or revert, before you {to}"
        )


async def next_epoch(db: Database, deployment: Deployment) -> None:
    """A promotion switched traffic: from now on its post-promotion analysis is what is judged. Inside the
    deployment's transaction."""
    await db.fetch_val(QUERIES["next_rollout_epoch"], {"id": deployment.id})


@dataclass(frozen=True)
class DueCheck:
    """A claimed check: the run as it was when claimed (its lease in `next_check_at`) and what it measures."""

    run: AnalysisRun
    deployment_name: str
    project_id: str
    revision_number: int
    max_retries: int
    rollout_epoch: int  # the rollout the run judges: what its checks read (shadow statistics are per rollout)


async def claim_due(db: Database) -> DueCheck | None:
    """Lease one due check (its own short transaction), or None when nothing is due."""
    async with db.transaction():
        row = await db.fetch_one(QUERIES["claim_due_analysis"], {"lease_seconds": float(LEASE_SECONDS)})
    if row is None:
        return None
    return DueCheck(
        records.analysis_run(row), row["deployment_name"], str(row["project_id"]), row["revision_number"],
        row["max_retries"], row["rollout_epoch"],
    )  # fmt: skip


@dataclass(frozen=True)
class Taken:
    """One metric measured: its value (None: the provider gave none), whether it passed (None: no number), and
    whether it was skipped (it does not apply: recorded, neither a pass nor an error)."""

    check: MetricCheck
    value: float | None
    passed: bool | None
    message: str
    skipped: bool = False


@dataclass(frozen=True)
class Verdict:
    """What a check did to its run: the new counts and phase, and the history row it deserves (none when it only
    passed a check of a run still in progress)."""

    phase: AnalysisPhase
    passed: int
    failed: int
    errors: int
    message: str | None = None
    result: SchedulingResult = SchedulingResult.SUCCESS
    error_code: str | None = None


Decide = Callable[[Deployment, AnalysisRun, Sequence[Taken]], Verdict]


async def record(
    db: Database, due: DueCheck, taken: Sequence[Taken], decide: Decide, *, actor: str
) -> AnalysisRun | None:
    """Record a check and apply `decide`'s verdict, in one transaction; None when the lease was lost (another
    scheduler took the check after this one's lease ended) or the run ended meanwhile: nothing is written."""
    async with db.transaction():
        deployment = await lock_deployment(db, due.run.deployment_id)
        row = await db.fetch_one(QUERIES["lock_analysis_run"], {"id": due.run.id})
        assert row is not None
        run = records.analysis_run(row)
        if run.phase is not AnalysisPhase.RUNNING or run.next_check_at != due.run.next_check_at:
            return None
        if taken:
            await db.execute(
                QUERIES["record_measurements"],
                {
                    "run_id": run.id,
                    "metrics": [t.check.name for t in taken],
                    "values": [t.value for t in taken],
                    "verdicts": [t.passed for t in taken],
                    "messages": [t.message[:1000] for t in taken],
                },
            )
        verdict = decide(deployment, run, taken)
        updated_row = await db.fetch_one(
            QUERIES["update_analysis_run"],
            {
                "id": run.id,
                "phase": verdict.phase.value,
                "passed": verdict.passed,
                "failed": verdict.failed,
                "errors": verdict.errors,
                "interval_seconds": float(run.spec.interval_seconds),
            },
        )
        assert updated_row is not None
        if verdict.message is not None:
            await history.note(
                db,
                deployment,
                phase=PHASE,
                message=f"{WORDS[run.kind]} of revision {due.revision_number}: {verdict.message}",
                actor=actor,
                result=verdict.result,
                error_code=verdict.error_code,
            )
        if verdict.phase is not AnalysisPhase.RUNNING:  # the deployment acts on the outcome now
            await db.execute(QUERIES["wake_deployment"], {"id": deployment.id})
            await notify(db, deployment.id)
    return records.analysis_run(updated_row)


async def route_ids_of_revision(db: Database, revision_id: str) -> list[str]:
    """The ids of every route of a revision (a data plane names its servers after them: PROMETHEUS `{{routes}}`)."""
    rows = await db.fetch_all(QUERIES["route_ids_of_revision"], {"revision_id": revision_id})
    return [str(row["id"]) for row in rows]
