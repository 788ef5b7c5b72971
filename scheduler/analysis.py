"""Analysis checks as scheduler steps: claim a due check, measure every metric of it, decide, record.

The decision is a pure function of (deployment, run, what was measured); measuring happens outside any transaction,
under the claim's lease (store/analysis.py), so a slow provider never holds a lock and a scheduler killed while it
measures leaves the check to the next one.
"""

import asyncio
from collections.abc import Sequence

import asyncpg
from databases import Database

from scheduler.providers import Providers, Reading, Target
from store import analysis
from store.analysis import DueCheck, Taken, Verdict
from store.models import (
    AnalysisPhase,
    AnalysisRun,
    AnalysisRunKind,
    Deployment,
    DeploymentLifecycle,
    DeploymentLifecycleSubStep,
    MetricCheck,
    SchedulingResult,
)

ACTOR = "analysis"


def passes(check: MetricCheck, value: float) -> bool:
    return (check.min is None or check.min <= value) and (check.max is None or value <= check.max)


def taken(check: MetricCheck, reading: Reading) -> Taken:
    if reading.value is None:
        return Taken(check, None, None, reading.message, skipped=reading.skipped)
    ok = passes(check, reading.value)
    return Taken(check, reading.value, ok, f"{reading.message}: {'within' if ok else 'outside'} {bounds(check)}")


def bounds(check: MetricCheck) -> str:
    if check.min is not None and check.max is not None:
        return f"[{check.min:g}, {check.max:g}]"
    return f"≥ {check.min:g}" if check.min is not None else f"≤ {check.max:g}"


def applies(deployment: Deployment, run: AnalysisRun) -> bool:
    """Whether the deployment is still where this run judges it: a pre-promotion run while its revision awaits
    promotion, a post-promotion run while its revision serves (the old routes kept warm), a canary step's run while
    its canary progresses, a background run while its canary steps or pauses."""
    if run.kind is AnalysisRunKind.PRE_PROMOTION:
        return (
            deployment.sub_step is DeploymentLifecycleSubStep.DEPLOYING_AWAITING_PROMOTION
            and deployment.deploying_revision_id == run.revision_id
        )
    if run.kind is AnalysisRunKind.POST_PROMOTION:
        return deployment.lifecycle is DeploymentLifecycle.READY and deployment.current_revision_id == run.revision_id
    deploying = (
        deployment.lifecycle is DeploymentLifecycle.DEPLOYING and deployment.deploying_revision_id == run.revision_id
    )
    if run.kind is AnalysisRunKind.CANARY_STEP:  # its step, which only ends with it (or a full promotion)
        return deploying and deployment.sub_step is DeploymentLifecycleSubStep.DEPLOYING_PROGRESSING
    # BACKGROUND: from the first step until the rollout ends, pauses for a person included
    return deploying and deployment.sub_step in (
        DeploymentLifecycleSubStep.DEPLOYING_PROGRESSING,
        DeploymentLifecycleSubStep.DEPLOYING_AWAITING_PROMOTION,
    )


def decide(deployment: Deployment, run: AnalysisRun, measured: Sequence[Taken]) -> Verdict:
    """A check fails when any metric is outside its bounds; a check where some metric gave no number (and none
    failed) is an error, not counted, and `maxRetries` errors in a row end the run as ERROR."""
    spec = run.spec
    if not applies(deployment, run):
        return Verdict(AnalysisPhase.ERROR, run.passed, run.failed, run.errors,
                       "stopped: the rollout moved on before the run ended", SchedulingResult.SKIPPED)  # fmt: skip
    failed = [t for t in measured if t.passed is False]
    unknown = [t for t in measured if t.passed is None and not t.skipped]  # a skipped check is neither
    passed_count, failed_count, errors = run.passed, run.failed, 0
    if failed:
        failed_count += 1
    elif unknown:
        errors = run.errors + 1
    else:
        passed_count += 1
    checks = f"{passed_count + failed_count} of {spec.count} checks, {failed_count} failed"
    if failed_count > spec.failure_limit:
        why = "; ".join(f"{t.check.name} {t.message}" for t in failed)
        return Verdict(AnalysisPhase.FAILED, passed_count, failed_count, errors,
                       f"FAILED after {checks} (limit {spec.failure_limit}): {why}",
                       SchedulingResult.GIVE_UP, "ANALYSIS_FAILED")  # fmt: skip
    if errors and errors >= max(1, deployment.strategy.max_retries):
        why = "; ".join(f"{t.check.name}: {t.message}" for t in unknown)
        return Verdict(AnalysisPhase.ERROR, passed_count, failed_count, errors,
                       f"ERROR: no number {errors} times in a row: {why}",
                       SchedulingResult.GIVE_UP, "ANALYSIS_ERROR")  # fmt: skip
    if passed_count + failed_count >= spec.count:
        return Verdict(AnalysisPhase.SUCCESSFUL, passed_count, failed_count, errors, f"SUCCESSFUL: {checks}")
    if failed:
        why = "; ".join(f"{t.check.name} {t.message}" for t in failed)
        return Verdict(AnalysisPhase.RUNNING, passed_count, failed_count, errors, f"a check failed ({checks}): {why}",
                       SchedulingResult.NEED_RETRY, "METRIC_FAILED")  # fmt: skip
    if unknown:
        why = "; ".join(f"{t.check.name}: {t.message}" for t in unknown)
        message = f"no number ({errors} in a row): {why}"
        return Verdict(AnalysisPhase.RUNNING, passed_count, failed_count, errors, message,
                       SchedulingResult.NEED_RETRY, "METRIC_ERROR")  # fmt: skip
    return Verdict(AnalysisPhase.RUNNING, passed_count, failed_count, errors)


async def measure_all(db: Database, providers: Providers, due: DueCheck) -> list[Taken]:
    run = due.run
    target = Target(run.deployment_id, due.deployment_name, due.project_id, run.revision_id, due.revision_number,
                    run.spec.interval_seconds, rollout_epoch=due.rollout_epoch)  # fmt: skip

    async def one(check: MetricCheck) -> Taken:
        try:
            return taken(check, await providers.measure(db, check, target))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            raise  # the database failed, not the metric: the lease runs out and the check is taken again
        except Exception as exc:  # a provider bug must not look like a pass, nor stop the scheduler
            return Taken(check, None, None, f"{type(exc).__name__}: {exc}"[:500])

    return list(await asyncio.gather(*(asyncio.create_task(one(c)) for c in run.spec.metrics)))


async def step(db: Database, providers: Providers) -> bool:
    """Take one due check; False when none is due."""
    due = await analysis.claim_due(db)
    if due is None:
        return False
    measured = await measure_all(db, providers, due)
    await analysis.record(db, due, measured, decide, actor=ACTOR)
    return True
