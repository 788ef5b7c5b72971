"""§8 Metric analysis: a real scheduler reverting failed post-promotion analyses against their due time; the pass
with nothing due against one over 1,000 analysis runs not yet due; due WEB checks taken side by side; and the
proxy's per-request counting against the same proxy without it."""

import asyncio
import json
import socket
import subprocess
import sys
import time
from typing import Any

import asyncpg

from bench import common, fleet
from bench.b_reaction import wait_until
from bench.http import Connection
from scheduler.providers import Providers
from scheduler.runner import run_once
from store import records, rollouts, route_health
from store.database import open_database
from store.models import (
    AnalysisSpec,
    BlueGreenSpec,
    DeploymentStrategyType,
    MetricCheck,
    MetricProvider,
    RouteStatus,
    Strategy,
)
from store.queries import QUERIES
from switchover.settings import Settings

WORKERS = Settings().scheduler_workers
DELAY_MS = 100  # how long the stub takes to answer a due check


def web_check(stub: str, *, value: float, delay_ms: int = 0, minimum: float = 1) -> MetricCheck:
    url = f"{stub}/value?v={value:g}&delay_ms={delay_ms}&d={{{{deployment}}}}"
    return MetricCheck("stub", MetricProvider.WEB, url=url, json_path="$.value", min=minimum)


def start_stub() -> common.Process:
    port = common.free_port()
    stub = common.start("analysis-stub", ["-m", "bench.analysis_stub", str(port)], {}, port=port)
    common.wait_http(stub)
    return stub


async def reaction(sampler: common.RssSampler, count: int, stub: str) -> dict[str, Any]:
    """`count` deployments promoted with a post-promotion analysis whose one check fails, due 12-21 s later; a real
    `switchover scheduler` takes the checks and reverts. Revert committed (its NOTIFY heard) minus check due."""
    url = await common.create_database("analysis_reaction")
    db = open_database(url, max_size=10)
    await db.connect()
    connection = await asyncpg.connect(url)
    listener = await asyncpg.connect(url)
    scheduler = None
    try:
        strategies = [
            Strategy(type=DeploymentStrategyType.BLUE_GREEN, blue_green_spec=BlueGreenSpec(
                scale_down_delay_seconds=600, post_promotion_analysis=AnalysisSpec(
                    metrics=(web_check(stub, value=0),), interval_seconds=1, count=1, initial_delay_seconds=delay)))
            for delay in range(12, 22)
        ]  # fmt: skip
        ids = await fleet.rollout(db, count, replicas=2, strategies=strategies, prefix="reverted")
        semaphore = asyncio.Semaphore(8)

        async def promote(deployment_id: str) -> None:
            async with semaphore:
                await rollouts.promote(db, deployment_id, actor="bench")

        await asyncio.gather(*(promote(i) for i in ids))
        due = {
            str(r["deployment_id"]): r["next_check_at"].timestamp()
            for r in await connection.fetch(
                "SELECT deployment_id, next_check_at FROM analysis_runs WHERE kind = 'POST_PROMOTION' "
                "AND phase = 'RUNNING'"
            )
        }
        assert len(due) == count, len(due)
        heard: dict[str, list[float]] = {}
        await listener.add_listener(
            "switchover_deployments", lambda c, p, ch, payload: heard.setdefault(payload, []).append(time.time())
        )
        scheduler = common.start_scheduler(url, env={"SWITCHOVER_ALLOW_LOOPBACK_URLS": "1"})
        sampler.watch("scheduler", scheduler.target_pid())
        sampler.phase("8 analysis revert")
        revert = "SELECT count(*) FROM deployment_history WHERE phase = 'revert' AND actor = 'analysis'"
        await wait_until(connection, revert, count, within=max(due.values()) - time.time() + 20)
        await asyncio.sleep(0.5)  # the last NOTIFYs
        reverted = {
            str(r["deployment_id"]): r["created_at"].timestamp()
            for r in await connection.fetch(
                "SELECT deployment_id, created_at FROM deployment_history WHERE phase = 'revert' AND actor = 'analysis'"
            )
        }
        assert len(reverted) == count, f"{len(reverted)} of {count} reverted"
        # The answer: every check measured and failed, revision 1 serves again on its own routes.
        failed = await connection.fetchval("SELECT count(*) FROM analysis_measurements WHERE passed = false")
        serving_1 = await connection.fetchval(
            """SELECT count(*) FROM deployments d JOIN revisions v ON v.id = d.current_revision_id
               WHERE v.number = 1 AND NOT EXISTS (SELECT 1 FROM routes r WHERE r.deployment_id = d.id
               AND r.traffic_status = 'ACTIVE' AND r.revision_id <> d.current_revision_id)"""
        )
        assert failed == count and serving_1 == count, (failed, serving_1)
        # The revert is the last change of each deployment: its NOTIFY is the last one heard.
        committed = [max(heard[i]) - due[i] for i in ids]
        assert all(max(heard[i]) >= reverted[i] for i in ids)
        return {
            "deployments": count,
            "revert_commit_s": common.summary(committed),
            "revert_txn_start_s": common.summary([reverted[i] - due[i] for i in ids]),
            "scheduler_cpu_seconds": scheduler.cpu_seconds(),
        }
    finally:
        if scheduler is not None:
            sampler.unwatch("scheduler")
            scheduler.stop()
        await listener.close()
        await connection.close()
        await db.disconnect()
        await common.drop_database(url)


async def claim_plan(connection: asyncpg.Connection) -> dict[str, Any]:
    """The analysis claim's plan (the index it scans) and its execution time inside PostgreSQL."""
    sql = "EXPLAIN (ANALYZE, FORMAT JSON) " + QUERIES["claim_due_analysis"].replace(":lease_seconds", "30")
    times, indexes = [], set()
    for _ in range(15):
        async with connection.transaction():
            plan = json.loads(await connection.fetchval(sql))[0]
        times.append(plan["Execution Time"])
        nodes = [plan["Plan"]]
        while nodes:
            node = nodes.pop()
            nodes += node.get("Plans", [])
            if "Index Name" in node and node["Relation Name"] == "analysis_runs":
                indexes.add(node["Index Name"])
    return {"indexes": sorted(indexes), "execution_ms": sorted(times)[len(times) // 2]}


async def passes(options: Any, stub: str) -> dict[str, Any]:
    """Two databases of `analysis_runs` READY deployments, one with a RUNNING analysis (a WEB check) on each, next
    check in an hour: `run_once` with nothing due on both, interleaved. Then `analysis_due` of those checks due,
    the stub answering each after DELAY_MS: one pass with the scheduler's workers and one with a single worker,
    interleaved over two rounds."""
    size, due = options.analysis_runs, options.analysis_due
    urls = [await common.create_database("analysis_none"), await common.create_database("analysis_runs")]
    dbs = [open_database(u, max_size=WORKERS + 3) for u in urls]  # the scheduler's pool (switchover/cli.py)
    connections = [await asyncpg.connect(u) for u in urls]
    providers = Providers(allow_loopback=True)
    results: dict[str, Any] = {}
    try:
        for db in dbs:
            await db.connect()
        for label, connection in zip(("none", "runs"), connections, strict=True):
            await fleet.bulk_insert(connection, size, label=label, due=False)
        spec = AnalysisSpec(metrics=(web_check(stub, value=1, delay_ms=DELAY_MS, minimum=0),), interval_seconds=3600,
                            count=1_000_000)  # fmt: skip
        runs = connections[1]
        await runs.execute(
            """INSERT INTO analysis_runs (deployment_id, revision_id, kind, spec, next_check_at)
               SELECT id, current_revision_id, 'POST_PROMOTION', $1::jsonb, now() + interval '1 hour'
               FROM deployments""",
            json.dumps(records.analysis_spec_json(spec), default=lambda e: e.value),
        )
        for connection in connections:
            await connection.execute("VACUUM ANALYZE")
        assert await runs.fetchval("SELECT count(*) FROM analysis_runs WHERE phase = 'RUNNING'") == size

        times: dict[str, list[float]] = {"none": [], "runs": []}
        for i in range(options.idle_repeat + 10):
            pairs = list(zip(("none", "runs"), dbs, strict=True))
            for label, db in pairs if i % 2 else pairs[::-1]:  # each first every other time
                started = time.perf_counter()
                steps = await run_once(db, workers=WORKERS, providers=providers)  # as `switchover scheduler` does
                elapsed = time.perf_counter() - started
                assert steps == 0, (label, steps)
                if i >= 10:
                    times[label].append(elapsed)
        results["idle"] = {label: common.summary(t) for label, t in times.items()}
        results["idle_ratio"] = results["idle"]["runs"]["median"] / results["idle"]["none"]["median"]
        results["claim_plan"] = await claim_plan(runs)

        async def due_pass(count: int, workers: int) -> float:
            await runs.execute(
                """UPDATE analysis_runs SET next_check_at = now() - interval '1 second'
                   WHERE id IN (SELECT id FROM analysis_runs ORDER BY random() LIMIT $1)""",
                count,
            )
            before = await runs.fetchval("SELECT count(*) FROM analysis_measurements WHERE passed")
            started = time.perf_counter()
            steps = await run_once(dbs[1], workers=workers, providers=providers)
            elapsed = time.perf_counter() - started
            measured = await runs.fetchval("SELECT count(*) FROM analysis_measurements WHERE passed") - before
            assert steps == count and measured == count, (steps, measured, count)
            return elapsed

        await due_pass(WORKERS * 2, WORKERS)  # warm-up: the HTTP client, the statements
        seconds: dict[str, list[float]] = {"workers": [], "one": []}
        for _ in range(2):
            seconds["workers"].append(await due_pass(due, WORKERS))
            seconds["one"].append(await due_pass(due, 1))
        ideal = due / WORKERS * DELAY_MS / 1000
        best = min(seconds["workers"])
        results["due"] = {
            "checks": due,
            "workers": WORKERS,
            "stub_delay_ms": DELAY_MS,
            "seconds": seconds,
            "ideal_seconds": ideal,
            "ratio_to_ideal": best / ideal,
            "speedup_over_one_worker": min(seconds["one"]) / best,
            "serial_floor_seconds": due * DELAY_MS / 1000,
        }
    finally:
        await providers.aclose()
        for connection in connections:
            await connection.close()
        for db in dbs:
            await db.disconnect()
        for url in urls:
            await common.drop_database(url)
    return results


def start_replica(route_id: str) -> tuple[subprocess.Popen[bytes], str]:
    """The demo replica (switchover/replica.py) on a socket of ours, as the process runtime starts it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    with (common.WORK / "replica.log").open("ab") as log:
        replica = subprocess.Popen(
            [sys.executable, "-m", "switchover.replica", "--fd", str(sock.fileno()), "--route", route_id,
             "--image", "registry.local/model:1", "--revision", "1"],
            pass_fds=[sock.fileno()], cwd=common.ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    sock.close()
    return replica, f"http://127.0.0.1:{port}"


async def counted(port: int) -> float:
    connection = Connection("127.0.0.1", port)
    try:
        status, text = await connection.request("GET", "/metrics")
    finally:
        await connection.close()
    assert status == 200
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.decode().splitlines()
        if line.startswith("switchover_proxy_requests_total{")
    )


async def proxy_overhead(sampler: common.RssSampler, options: Any) -> dict[str, Any]:
    """`switchover proxy` and the same proxy with `count=False` (bench/proxy_app.py) in front of the same two
    replica processes; requests through both interleaved one at a time from a client process of its own."""
    url = await common.create_database("analysis_proxy")
    db = open_database(url, max_size=4)
    await db.connect()
    replicas: list[subprocess.Popen[bytes]] = []
    proxies: dict[str, common.Process] = {}
    try:
        [deployment] = await fleet.rollout(db, 1, replicas=2, awaiting=False, prefix="proxied")
        route_ids = [str(r["id"]) for r in await db.fetch_all("SELECT id FROM routes WHERE deployment_id = :d",
                                                               {"d": deployment})]  # fmt: skip
        for route_id in route_ids:
            replica, endpoint = start_replica(route_id)
            replicas.append(replica)
            await route_health.report_route_health(db, route_id, RouteStatus.HEALTHY, endpoint_url=endpoint,
                                                   actor="orchestrator")  # fmt: skip
        for name, module in (("counted", "switchover"), ("uncounted", "bench.proxy_app")):
            port = common.free_port()
            args = ["-m", module, "proxy"] if module == "switchover" else ["-m", module]
            proxies[name] = common.start(f"proxy-{name}", [*args, "--port", str(port)], {"DATABASE_URL": url},
                                         port=port)  # fmt: skip
        for name, process in proxies.items():
            common.wait_http(process, "/health")
            sampler.watch(f"proxy-{name}", process.target_pid())
        sampler.phase("8 proxy")
        path, body = "/proxied-0/v1/predict", '{"features": [1, 2, 3]}'
        # The answers first: both forward to the replicas; only the counted one counts.
        for attempt in range(50):  # the replicas start
            try:
                for process in proxies.values():
                    connection = Connection("127.0.0.1", process.port or 0)
                    status, payload = await connection.request("POST", path, body.encode())
                    await connection.close()
                    assert status == 200 and b'"revision":1' in payload, (status, payload[:200])
                break
            except (AssertionError, OSError):
                if attempt == 49:
                    raise
                await asyncio.sleep(0.2)
        ports = {name: p.port for name, p in proxies.items()}
        before = {name: await counted(port or 0) for name, port in ports.items()}
        cpu = {name: p.cpu_seconds() for name, p in proxies.items()}
        config = {"ports": ports, "path": path, "body": body, "warmup": 200, "requests": options.proxy_requests}
        latency = await asyncio.to_thread(common.run_module, "bench.proxy_client", "proxy-client", config)
        cpu = {name: p.cpu_seconds() - cpu[name] for name, p in proxies.items()}
        after = {name: await counted(port or 0) for name, port in ports.items()}
        sent = config["warmup"] + config["requests"]
        assert after["counted"] - before["counted"] == sent and after["uncounted"] == 0, (before, after)
        return {
            "latency_ms": latency,
            "ratio_median": latency["counted"]["median"] / latency["uncounted"]["median"],
            "cpu_seconds": cpu,
            "cpu_ratio": cpu["counted"] / cpu["uncounted"],
            "requests_each": sent,
        }
    finally:
        for name, process in proxies.items():
            sampler.unwatch(f"proxy-{name}")
            process.stop()
        for replica in replicas:
            replica.terminate()
            replica.wait(timeout=10)
        await db.disconnect()
        await common.drop_database(url)


async def run(sampler: common.RssSampler, options: Any) -> dict[str, Any]:
    stub_process = start_stub()
    stub = f"http://127.0.0.1:{stub_process.port}"
    results: dict[str, Any] = {}
    try:
        results["passes"] = await passes(options, stub)
        p = results["passes"]
        print(f"  idle pass, 1,000 runs not due vs none: {p['idle_ratio']:.2f}×; {p['due']['checks']} due checks "
              f"{p['due']['ratio_to_ideal']:.2f}× the ideal", flush=True)  # fmt: skip
        results["reaction"] = await reaction(sampler, options.analysis_reaction, stub)
        print(f"  revert p99 {results['reaction']['revert_commit_s']['p99']:.0f} ms after due", flush=True)
    finally:
        stub_process.stop()
    results["proxy"] = await proxy_overhead(sampler, options)
    print(f"  proxy counting: median {results['proxy']['ratio_median']:.3f}×", flush=True)
    return results
