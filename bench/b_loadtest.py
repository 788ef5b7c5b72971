"""The load test: 50 concurrent clients mixing reads, promotions, rollbacks and health reports against a real server
and scheduler on loopback; then no 5xx, no lost or doubled update, and the invariants of tests/invariants.py."""

import asyncio
import re
import time
from collections import Counter
from typing import Any

import asyncpg

from bench import common, fleet
from store.database import open_database
from store.models import DeploymentStrategyType, Strategy
from tests import invariants

EXPECTED_CODES = {"CONFLICT", "INVALID_STATE"}


def run_clients(port: int, deployment_ids: list[str], *, clients: int, duration: float) -> Any:
    config = {
        "host": "127.0.0.1",
        "port": port,
        "clients": clients,
        "duration": duration,
        "deployments": deployment_ids,
    }
    return common.run_module("bench.loadtest_client", "loadtest", config)


def tally(rows: list[asyncpg.Record], pattern: str) -> Counter[tuple[str, int]]:
    found: Counter[tuple[str, int]] = Counter()
    for row in rows:
        match = re.match(pattern, row["message"])
        assert match, row["message"]
        found[(str(row["deployment_id"]), int(match.group(1)))] += 1
    return found


async def check_updates(connection: asyncpg.Connection, ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Every mutation the clients saw succeed is in the history exactly once, and nothing else is."""
    checks: dict[str, Any] = {}

    async def history(phase: str, *, actor: str | None = "anonymous") -> list[asyncpg.Record]:
        sql = "SELECT deployment_id, message FROM deployment_history WHERE phase = $1"
        if actor is None:
            return await connection.fetch(sql, phase)
        return await connection.fetch(sql + " AND actor = $2", phase, actor)

    def succeeded(op: str) -> Counter[tuple[str, int]]:
        return Counter((o["deployment"], o["revision"]) for o in ops if o["op"] == op and o["ok"])

    for op, phase, pattern in (
        ("promote", "promote", r"promoted revision (\d+)"),
        ("rollback", "rollback", r"rollback of revision (\d+) requested"),
        ("deployRevision", "deploy", r"deploying revision (\d+) "),
        ("addRevision", "add_revision", r"added revision (\d+) "),
    ):
        clients = succeeded(op)
        recorded = tally(await history(phase), pattern)
        checks[op] = {
            "succeeded": sum(clients.values()),
            "refused": sum(1 for o in ops if o["op"] == op and not o["ok"]),
            "in_history": sum(recorded.values()),
            "missing_from_history": sum((clients - recorded).values()),
            "in_history_but_not_acknowledged": sum((recorded - clients).values()),
            "acknowledged_twice": sum(1 for n in clients.values() if n > 1),
        }
    # A revision is promoted at most once, by whoever did it (operator or scheduler).
    # (The scheduler's other notes of the promote phase, such as "1 new route(s) failed …; replacing them", are not.)
    promoted = [r for r in await history("promote", actor=None) if r["message"].startswith("promoted revision")]
    all_promotions = tally(promoted, r"promoted revision (\d+)")
    checks["promote"]["by_scheduler"] = sum(all_promotions.values()) - checks["promote"]["in_history"]
    checks["promote"]["revisions_promoted_twice"] = sum(1 for n in all_promotions.values() if n > 1)

    # Route reports: TERMINATED is final, so every acknowledged TERMINATED report must still hold.
    reports = [o for o in ops if o["op"] == "reportRouteHealth"]
    terminated = {o["route"] for o in reports if o["ok"] and o["status"] == "TERMINATED"}
    still = await connection.fetchval(
        "SELECT count(*) FROM routes WHERE id = ANY($1::uuid[]) AND status = 'TERMINATED'", list(terminated)
    )
    health_rows = await connection.fetchval(
        "SELECT count(*) FROM deployment_history WHERE phase = 'route_health' AND actor = 'anonymous'"
    )
    checks["reportRouteHealth"] = {
        "succeeded": sum(o["ok"] for o in reports),
        "refused": sum(not o["ok"] for o in reports),
        "history_rows": health_rows,
        "history_rows_exceed_successes": max(0, health_rows - sum(o["ok"] for o in reports)),
        "terminated_reports_lost": len(terminated) - still,
    }
    # Counts that must agree with each other.
    checks["revision_counter_mismatches"] = await connection.fetchval(
        """SELECT count(*) FROM deployments d
           WHERE last_revision_number <> (SELECT count(*) FROM revisions r WHERE r.deployment_id = d.id)"""
    )
    adds: Counter[str] = Counter(o["deployment"] for o in ops if o["op"] == "addRevision" and o["ok"])
    rows = await connection.fetch("SELECT id, last_revision_number FROM deployments")
    checks["revisions_not_matching_acknowledged_adds"] = sum(
        1 for r in rows if r["last_revision_number"] != 1 + adds[str(r["id"])]
    )
    checks["ready_with_wrong_active_route_count"] = await connection.fetchval(
        """SELECT count(*) FROM deployments d WHERE lifecycle = 'READY' AND replicas < (
             SELECT count(*) FROM routes r WHERE r.deployment_id = d.id AND r.traffic_status = 'ACTIVE')"""
    )
    return checks


def lost_or_doubled(checks: dict[str, Any]) -> int:
    bad = 0
    for op in ("promote", "rollback", "deployRevision", "addRevision"):
        c = checks[op]
        bad += c["missing_from_history"] + c["in_history_but_not_acknowledged"] + c["acknowledged_twice"]
    bad += checks["promote"]["revisions_promoted_twice"]
    bad += (
        checks["reportRouteHealth"]["history_rows_exceed_successes"]
        + checks["reportRouteHealth"]["terminated_reports_lost"]
    )
    bad += checks["revision_counter_mismatches"] + checks["revisions_not_matching_acknowledged_adds"]
    bad += checks["ready_with_wrong_active_route_count"]
    return int(bad)


async def run(sampler: common.RssSampler, options: Any) -> dict[str, Any]:
    url = await common.create_database("load")
    db = open_database(url, max_size=10)
    await db.connect()
    connection = await asyncpg.connect(url)
    server = scheduler = None
    results: dict[str, Any] = {"clients": options.load_clients, "duration": options.load_seconds}
    try:
        strategies = [
            *[fleet.blue_green(scale_down_delay_seconds=2)] * 6,
            *[fleet.blue_green(auto_promote=True, promote_delay_seconds=1, scale_down_delay_seconds=2)] * 3,
            Strategy(type=DeploymentStrategyType.ROLLING),
        ]
        ids = await fleet.rollout(db, options.load_deployments, replicas=2, strategies=strategies, awaiting=False)
        results["deployments"] = len(ids)
        server = common.start_server(url)
        scheduler = common.start_scheduler(url)
        sampler.watch("server", server.target_pid())
        sampler.watch("scheduler", scheduler.target_pid())
        sampler.phase("7 load test")
        cpu = {"server": server.cpu_seconds(), "scheduler": scheduler.cpu_seconds()}
        outcome = await asyncio.to_thread(
            run_clients, server.port or 0, ids, clients=options.load_clients, duration=options.load_seconds
        )
        results["cpu_seconds"] = {
            "server": server.cpu_seconds() - cpu["server"],
            "scheduler": scheduler.cpu_seconds() - cpu["scheduler"],
        }
        # Let the scheduler finish what is due, then stop both and look at the database at rest.
        quiet = 0
        deadline = time.monotonic() + 30
        while quiet < 3 and time.monotonic() < deadline:
            due = await connection.fetchval("SELECT count(*) FROM deployments WHERE next_check_at <= now()")
            quiet = quiet + 1 if due == 0 else 0
            await asyncio.sleep(0.5)
        sampler.unwatch("server")
        sampler.unwatch("scheduler")
        server.stop()
        scheduler.stop()
        server = scheduler = None
        ops = outcome.pop("ops")
        results.update(outcome)
        results["ops"] = dict(Counter(f"{o['op']}:{'ok' if o['ok'] else 'refused'}" for o in ops))
        results["five_xx"] = sum(n for s, n in outcome["status"].items() if int(s) >= 500)
        results["unexpected_codes"] = {
            k: n for k, n in outcome["codes"].items() if k.split(":", 1)[1] not in EXPECTED_CODES
        }
        results["checks"] = await check_updates(connection, ops)
        results["lost_or_doubled"] = lost_or_doubled(results["checks"])
        try:
            await invariants.check(db)
            results["invariants"] = "hold"
        except AssertionError as failure:
            results["invariants"] = f"VIOLATED: {failure}"
        results["final_states"] = {
            f"{r[0]}{'/' + r[1] if r[1] else ''}": r[2]
            for r in await connection.fetch("SELECT lifecycle, sub_step, count(*) FROM deployments GROUP BY 1, 2")
        }
    finally:
        for process in (server, scheduler):
            if process is not None:
                process.stop()
        await connection.close()
        await db.disconnect()
        await common.drop_database(url)
    return results
