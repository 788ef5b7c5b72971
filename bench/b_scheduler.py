"""§4 The scheduler pass: 1,000 due auto-promotions in one `run_once`, and the cost of a pass with nothing due at
100, 1,000, 10,000 and 100,000 deployments (bulk-inserted with SQL; see bench/fleet.py)."""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import asyncpg
from databases import Database

from bench import common, fleet, profiles
from scheduler.runner import run_once
from store.database import open_database
from store.queries import QUERIES
from switchover.settings import Settings
from tests import invariants

WORKERS = Settings().scheduler_workers


async def claim_plan(connection: asyncpg.Connection, repeat: int = 15) -> dict[str, Any]:
    """The claim query's plan and its median execution time inside PostgreSQL (`EXPLAIN ANALYZE`)."""
    executions = []
    node: dict[str, Any] = {}
    for _ in range(repeat):
        async with connection.transaction():
            plan = json.loads(
                await connection.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + QUERIES["claim_due_deployment"])
            )
        executions.append(plan[0]["Execution Time"])
        node = plan[0]["Plan"]
        while node.get("Plans") and not node["Node Type"].endswith("Scan"):
            node = node["Plans"][0]
    return {
        "plan_scan": f"{node['Node Type']}" + (f" using {node['Index Name']}" if "Index Name" in node else ""),
        "plan_execution_ms": statistics.median(executions),
    }


async def idle_pass_cost(
    fleets: dict[str, tuple[Database, asyncpg.Connection]], *, repeat: int
) -> dict[str, dict[str, Any]]:
    """`run_once` when nothing is due — what a scheduler pays per wake-up — on databases of different sizes, the
    passes interleaved round-robin so that machine noise hits every size alike."""
    times: dict[str, list[float]] = {label: [] for label in fleets}
    for i in range(repeat + 10):
        for label, (db, _) in fleets.items():
            started = time.perf_counter()
            steps = await run_once(db)
            elapsed = time.perf_counter() - started
            assert steps == 0, (label, steps)
            if i >= 10:
                times[label].append(elapsed)
    return {
        label: {**common.summary(times[label]), **await claim_plan(connection)}
        for label, (_, connection) in fleets.items()
    }


async def due_pass(db: Database, connection: asyncpg.Connection, count: int, label: str) -> dict[str, Any]:
    await fleet.bulk_insert(connection, count, label=label, due=True)
    before = await connection.fetchval("SELECT count(*) FROM deployment_history WHERE phase = 'promote'")
    started = time.perf_counter()
    steps = await run_once(db, workers=WORKERS)  # as `switchover scheduler` runs it
    seconds = time.perf_counter() - started
    promoted = await connection.fetchval("SELECT count(*) FROM deployment_history WHERE phase = 'promote'") - before
    left = await connection.fetchval("SELECT count(*) FROM deployments WHERE sub_step = 'DEPLOYING_AWAITING_PROMOTION'")
    assert promoted == count and left == 0, (promoted, left)
    return {
        "due": count,
        "steps": steps,
        "promoted": promoted,
        "seconds": seconds,
        "ms_per_promotion": seconds / count * 1000,
    }


async def statement_overhead(db: Database, connection: asyncpg.Connection, repeat: int = 400) -> dict[str, Any]:
    """One primary-key lookup through the store's `databases` pool (store/database.py `Store`) and the same statement
    straight on asyncpg, interleaved, each on a connection held for the whole loop."""
    revision = await connection.fetchval("SELECT id FROM revisions LIMIT 1")
    query = "SELECT * FROM revisions WHERE id = :id"
    times: dict[str, list[float]] = {"databases": [], "asyncpg": []}
    async with db.connection():
        for i in range(repeat + 20):
            started = time.perf_counter()
            row = await db.fetch_one(query, {"id": str(revision)})
            through_databases = time.perf_counter() - started
            assert row is not None
            started = time.perf_counter()
            raw = await connection.fetchrow("SELECT * FROM revisions WHERE id = $1", revision)
            through_asyncpg = time.perf_counter() - started
            assert raw is not None
            if i >= 20:
                times["databases"].append(through_databases)
                times["asyncpg"].append(through_asyncpg)
    found = {k: common.summary(v) for k, v in times.items()}
    found["overhead_ms"] = found["databases"]["median"] - found["asyncpg"]["median"]
    return found


async def due_experiments(url: str, connection: asyncpg.Connection, count: int) -> dict[str, Any]:
    """The same due pass, changed in ways the product could adopt (measured here without changing it)."""
    found: dict[str, Any] = {}
    # Four passes at once in one process, as four schedulers would (claims skip each other's locks): commits overlap.
    db = open_database(url, max_size=8)
    await db.connect()
    try:
        await fleet.bulk_insert(connection, count, label="due-parallel", due=True)
        started = time.perf_counter()
        steps = await asyncio.gather(*(run_once(db) for _ in range(4)))
        found["4 concurrent run_once tasks"] = {"seconds": time.perf_counter() - started, "steps": sum(steps)}
    finally:
        await db.disconnect()
    # One pass as shipped, but with commits that do not wait for the WAL flush (a crash may undo the last few; the
    # scheduler would redo them): how much of a pass is the flush per commit.
    name = url.rsplit("/", 1)[1]
    await connection.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    db = open_database(url, max_size=WORKERS)
    await db.connect()
    try:
        await fleet.bulk_insert(connection, count, label="due-async-commit", due=True)
        started = time.perf_counter()
        steps_one = await run_once(db, workers=WORKERS)
        found["synchronous_commit = off"] = {"seconds": time.perf_counter() - started, "steps": steps_one}
    finally:
        await db.disconnect()
        await connection.execute(f'ALTER DATABASE "{name}" RESET synchronous_commit')
    for name, found_one in found.items():
        assert found_one["steps"] == count, (name, found_one)
        print(f"  experiment {name}: {found_one['seconds']:.2f} s", flush=True)
    return found


def profile_pass(url: str, count: int) -> dict[str, Any]:
    """One `run_once` over `count` due deployments in a process of its own under py-spy."""
    raw = common.WORK / "profile-scheduler-pass.txt"
    raw.unlink(missing_ok=True)
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    subprocess.run(
        [spy, "record", "--nonblocking", "--format", "raw", "--rate", "500", "--output", str(raw), "--",
         sys.executable, "-m", "bench.scheduler_pass", url, str(count)],
        cwd=common.ROOT, check=True, env={**os.environ, "PYTHONPATH": str(common.ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    summary = profiles.summarize(raw, f"one scheduler pass promoting {count} due deployments", must_contain="run_once")
    profiles.write_text(summary, common.BENCH / "profiles" / "scheduler-pass.txt")
    return summary


async def run(sampler: common.RssSampler, options: Any) -> dict[str, Any]:
    """One database per size (the largest last); the due pass where `due_at` says; then the idle passes of all sizes
    interleaved; then, on the largest, the due pass again, its variants, a control without the index, a profile."""
    fleets: dict[str, tuple[Database, asyncpg.Connection]] = {}
    urls: list[str] = []
    results: dict[str, Any] = {"idle": {}, "due": {}, "insert_seconds": {}}
    try:
        for size in options.scheduler_sizes:
            url = await common.create_database(f"scheduler{size}")
            urls.append(url)
            db = open_database(url, max_size=WORKERS + 3)  # the scheduler's pool (switchover/cli.py)
            await db.connect()
            connection = await asyncpg.connect(url)
            fleets[str(size)] = (db, connection)
            due = options.due if size == options.due_at else 0
            started = time.perf_counter()
            await fleet.bulk_insert(connection, size - due, label=f"ready-{size}", due=False)
            results["insert_seconds"][str(size)] = time.perf_counter() - started
            if due:
                # 10,000 deployments of which 1,000 are due for auto-promotion.
                results["due"][str(size)] = await due_pass(db, connection, due, f"due-{size}")
                print(f"  {due} due among {size}: {results['due'][str(size)]['seconds']:.2f} s", flush=True)
        results["idle"] = await idle_pass_cost(fleets, repeat=options.idle_repeat)
        for size, (_, connection) in fleets.items():
            # Dead index entries (next_check_at values changed by promotions) stay until (auto)vacuum.
            await connection.execute("VACUUM ANALYZE deployments")
            results["idle"][size]["plan_execution_ms_after_vacuum"] = (await claim_plan(connection))[
                "plan_execution_ms"
            ]
        for size, found in results["idle"].items():
            print(f"  idle pass at {size}: {found['median']:.2f} ms", flush=True)

        largest = str(options.scheduler_sizes[-1])
        smallest = str(options.scheduler_sizes[0])
        db, connection = fleets[largest]
        url = urls[-1]
        results["due"][largest] = await due_pass(db, connection, options.due, f"due-again-{largest}")
        print(f"  {options.due} due among {largest}: {results['due'][largest]['seconds']:.2f} s", flush=True)
        results["due_experiments"] = await due_experiments(url, connection, options.due)
        results["statement_overhead"] = await statement_overhead(db, connection)

        # Control: the largest without the index on next_check_at (then recreated as the migration has it),
        # interleaved with the smallest.
        await connection.execute("DROP INDEX deployments_due")
        try:
            control = await idle_pass_cost(
                {smallest: fleets[smallest], largest: fleets[largest]}, repeat=max(20, options.idle_repeat // 5)
            )
        finally:
            await connection.execute(
                "CREATE INDEX deployments_due ON deployments (next_check_at) WHERE next_check_at IS NOT NULL"
            )
        results["idle_without_index"] = control[largest]
        results["idle_without_index_smallest"] = control[smallest]
        results["total_deployments"] = await connection.fetchval("SELECT count(*) FROM deployments")

        await fleet.bulk_insert(connection, options.profile_due, label="due-profiled", due=True)
        results["profile"] = await asyncio.to_thread(profile_pass, url, options.profile_due)

        started = time.perf_counter()
        await invariants.check(db)
        results["invariants"] = {"ok": True, "seconds": time.perf_counter() - started}
    finally:
        for db, connection in fleets.values():
            await connection.close()
            await db.disconnect()
        for url in urls:
            await common.drop_database(url)
    return results
