"""§5 Reaction of a real `switchover scheduler` process: auto-promotions against their due time, the CPU it burns
while idle, and how fast an API change wakes it (NOTIFY) compared with its poll interval."""

import asyncio
import time
from datetime import datetime
from typing import Any

import asyncpg
import httpx
from databases import Database

from bench import common, fleet, profiles
from store import deployments, rollouts
from store.database import open_database


async def wait_until(connection: asyncpg.Connection, sql: str, expected: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await connection.fetchval(sql) == expected:
            return True
        await asyncio.sleep(0.2)
    return False


async def idle_cost(scheduler: common.Process, connection: asyncpg.Connection, seconds: float) -> dict[str, Any]:
    """CPU time and transactions of the scheduler over `seconds` with nothing to do."""
    name = await connection.fetchval("SELECT current_database()")
    stats = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1"
    await connection.execute("SELECT pg_stat_clear_snapshot()")
    xacts = await connection.fetchval(stats, name)
    cpu = scheduler.cpu_seconds()
    started = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    cpu = scheduler.cpu_seconds() - cpu
    await connection.execute("SELECT pg_stat_clear_snapshot()")
    # Our own two statistics reads are in the count: take them out.
    xacts = await connection.fetchval(stats, name) - xacts - 2
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "cpu_percent_of_one_core": 100 * cpu / elapsed,
        "transactions_per_second": xacts / elapsed,
    }


async def wake_latency(db: Database, connection: asyncpg.Connection, ids: list[str], count: int) -> list[float]:
    """deployRevision (which NOTIFYs) until the scheduler has started the new green routes, one at a time at
    random moments relative to its poll timer. Polling alone would take up to the poll interval (0.5 s)."""
    latencies = []
    for i, deployment_id in enumerate(ids[:count]):
        revision = await deployments.add_revision(
            db, deployment_id=deployment_id, image="registry.local/model:3", env=None, health_check_path=None,
            actor="bench",
        )  # fmt: skip
        await asyncio.sleep(0.05 + (i * 0.137) % 0.5)
        started = time.perf_counter()
        await rollouts.deploy_revision(db, deployment_id, revision.id, actor="bench")
        while not await connection.fetchval("SELECT count(*) FROM routes WHERE revision_id = $1", revision.id):
            if time.perf_counter() - started > 5:
                raise TimeoutError("the scheduler did not start green routes within 5 s")
            await asyncio.sleep(0.002)
        latencies.append(time.perf_counter() - started)
    return latencies


def httpx_client_cost(repeat: int = 20) -> dict[str, float]:
    """What the health checker pays every second even with no route to probe: a new httpx.AsyncClient (it loads
    the CA bundle into a fresh SSL context), opened and closed (scheduler/probes.py, HealthChecker.run_once)."""

    async def one() -> float:
        started = time.perf_counter()
        async with httpx.AsyncClient(timeout=1.0):
            pass
        return time.perf_counter() - started

    async def all_of_them() -> list[float]:
        return [await one() for _ in range(repeat)]

    return common.summary(asyncio.run(all_of_them()))


async def run(sampler: common.RssSampler, options: Any) -> dict[str, Any]:
    url = await common.create_database("reaction")
    db = open_database(url, max_size=10)
    await db.connect()
    connection = await asyncpg.connect(url)
    listener = await asyncpg.connect(url)
    scheduler = None
    results: dict[str, Any] = {}
    try:
        count = options.reaction_deployments
        # Due 12-21 s after they start waiting: time for the scheduler process to start first.
        strategies = [
            fleet.blue_green(auto_promote=True, promote_delay_seconds=delay, scale_down_delay_seconds=0)
            for delay in range(12, 22)
        ]
        ids = await fleet.rollout(db, count, replicas=2, strategies=strategies)
        rows = await connection.fetch(
            """SELECT id, phase_started_at + make_interval(secs => promote_delay_seconds) AS due FROM deployments
               WHERE sub_step = 'DEPLOYING_AWAITING_PROMOTION'"""
        )
        due: dict[str, datetime] = {str(r["id"]): r["due"] for r in rows}
        assert len(due) == count
        seen: dict[str, float] = {}

        def heard(conn: Any, pid: int, channel: str, payload: str) -> None:
            seen.setdefault(payload, time.time())

        await listener.add_listener("switchover_deployments", heard)
        scheduler = common.start_scheduler(url)
        sampler.watch("scheduler", scheduler.target_pid())
        sampler.phase("5 reaction")
        first_due = min(due.values()).timestamp() - time.time()
        results["first_due_after_start_s"] = first_due
        done = await wait_until(
            connection,
            "SELECT count(*) FROM deployment_history WHERE phase = 'promote' AND actor = 'scheduler' "
            "AND message LIKE 'promoted revision 2%'",
            count,
            within=max(due.values()).timestamp() - time.time() + 20,
        )
        assert done, "not every deployment was auto-promoted"
        promoted_at = {
            str(r["deployment_id"]): r["created_at"]
            for r in await connection.fetch(
                "SELECT deployment_id, created_at FROM deployment_history WHERE phase = 'promote' "
                "AND message LIKE 'promoted revision 2%'"
            )
        }
        # Seen committed (NOTIFY is delivered at commit) minus due; and the promoting transaction's start minus due.
        committed = [seen[i] - due[i].timestamp() for i in due]
        started = [(promoted_at[i] - due[i]).total_seconds() for i in due]
        results["reaction_commit_s"] = common.summary(committed)
        results["reaction_txn_start_s"] = common.summary(started)
        results["raw_commit_ms"] = [x * 1000 for x in committed]
        assert min(started) >= 0, "promoted before its due time"
        cpu_busy = scheduler.cpu_seconds()
        results["scheduler_cpu_seconds_until_all_promoted"] = cpu_busy

        # Idle: the blue routes drain (scale-down delay 0), then nothing is due at all.
        settled = await wait_until(
            connection, "SELECT count(*) FROM deployments WHERE next_check_at IS NOT NULL", 0, within=20
        )
        assert settled, "the scheduler did not settle"
        sampler.phase("5 scheduler idle")
        results["idle"] = await idle_cost(scheduler, connection, options.idle_seconds)
        sampler.phase("5 scheduler wake-up")
        wake = await wake_latency(db, connection, ids, options.wake_samples)
        results["wake_on_notify_ms"] = common.summary(wake)
        sampler.unwatch("scheduler")
        scheduler.stop()
        scheduler = None

        # Where the idle CPU goes: a scheduler under py-spy with nothing to do, and the suspect measured alone.
        sampler.phase("profiling")
        await connection.execute("UPDATE deployments SET next_check_at = NULL")
        raw = common.WORK / "profile-scheduler-idle.txt"
        raw.unlink(missing_ok=True)
        profiled = common.start_scheduler(url, name="scheduler-profiled", profile=raw)
        try:
            await asyncio.sleep(3 + options.idle_seconds)
        finally:
            profiled.stop()
        summary = profiles.summarize(
            raw, f"switchover scheduler idle for ~{options.idle_seconds:.0f} s (after start-up)"
        )
        profiles.write_text(summary, common.BENCH / "profiles" / "scheduler-idle.txt")
        results["idle_profile"] = summary
        results["httpx_client_ms"] = await asyncio.to_thread(httpx_client_cost)
    finally:
        if scheduler is not None:
            sampler.unwatch("scheduler")
            scheduler.stop()
        await listener.close()
        await connection.close()
        await db.disconnect()
        await common.drop_database(url)
    return results
