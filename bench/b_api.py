"""§1 promotion latency, §2 the deployments page, §3 mixed-read throughput, and the server's profiles and measured
optimisation candidates: all against one database, with a real `switchover serve --insecure` process."""

import asyncio
import base64
import json
import random
import statistics
import time
import uuid
from typing import Any

import asyncpg
from databases import Database

from bench import common, fleet, floor_sql, profiles
from bench.http import Connection
from store import rollouts
from store.database import open_database

PROMOTE = """mutation($id: ID!) { promoteDeployment(input: {deploymentId: $id}) {
  deployment { id lifecycle subStep } promotedRoutes { id trafficStatus trafficRatio } drainedRoutes { id } } }"""
STATEMENTS = ("fetch_all", "fetch_one", "fetch_val", "execute", "execute_many")


def cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"deployment:{seq}".encode()).decode()


async def count_statements(db: Database, work: Any) -> int:
    """How many statements `work()` sends through `db` (transactions' BEGIN/COMMIT not included)."""
    sent: list[str] = []
    originals = {name: getattr(db, name) for name in STATEMENTS}

    def wrap(original: Any) -> Any:
        def counting(query: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(str(query))
            return original(query, *args, **kwargs)

        return counting

    for name, original in originals.items():
        setattr(db, name, wrap(original))
    try:
        await work()
    finally:
        for name in originals:
            delattr(db, name)
    return len(sent)


async def bench_promote(
    db: Database, url: str, server: common.Process, ids: list[str], *, count: int, warmup: int
) -> dict[str, Any]:
    """Interleaved: promoteDeployment over HTTP, store.rollouts.promote in-process, the asyncpg floor."""
    http = Connection("127.0.0.1", server.port or 0)
    pg = await asyncpg.connect(url)
    ids = list(ids)
    variants = ("http", "store", "floor")
    times: dict[str, list[float]] = {v: [] for v in variants}

    async def promote(variant: str, deployment_id: str) -> None:
        if variant == "http":
            status, body = await http.graphql(PROMOTE, {"id": deployment_id})
            assert status == 200 and "errors" not in body, body
            assert body["data"]["promoteDeployment"]["deployment"]["lifecycle"] == "READY", body
        elif variant == "store":
            await rollouts.promote(db, deployment_id, actor="bench")
        else:
            await floor_sql.promote(pg, uuid.UUID(deployment_id))

    try:
        for i in range(warmup + count):
            for variant in variants:
                deployment_id = ids.pop()
                started = time.perf_counter()
                await promote(variant, deployment_id)
                if i >= warmup:
                    times[variant].append(time.perf_counter() - started)
        statements = await count_statements(db, lambda: rollouts.promote(db, ids.pop(), actor="bench"))
    finally:
        await http.close()
        await pg.close()
    result = {v: common.summary(t) for v, t in times.items()}
    return {
        "latency_ms": result,
        "raw_ms": {v: [x * 1000 for x in t] for v, t in times.items()},
        "ratio_http_to_floor": result["http"]["median"] / result["floor"]["median"],
        "ratio_store_to_floor": result["store"]["median"] / result["floor"]["median"],
        "store_statements": statements,
        "floor_statements": 6,
    }


async def bench_page(
    db: Database, url: str, server: common.Process, floor: common.Process, *, repeat: int, first: int = 100
) -> dict[str, Any]:
    """deployments(first: 100) with nested fields over HTTP vs one hand-written SQL statement (and vs that
    statement served over HTTP by the bare floor app)."""
    http = Connection("127.0.0.1", server.port or 0)
    floor_http = Connection("127.0.0.1", floor.port or 0)
    pg = await asyncpg.connect(url)
    times: dict[str, list[float]] = {"graphql_http": [], "sql": [], "floor_http": []}
    try:
        # The same data, field for field.
        _, body = await http.graphql(floor_sql.GQL_PAGE, {"first": first})
        sql_data = json.loads(await pg.fetchval(floor_sql.PAGE, first, 0))
        assert body["data"] == sql_data, "the GraphQL page and the SQL floor disagree"
        assert len(sql_data["deployments"]["edges"]) == first
        for i in range(repeat + 3):
            started = time.perf_counter()
            status, body = await http.graphql(floor_sql.GQL_PAGE, {"first": first})
            t_graphql = time.perf_counter() - started
            assert status == 200 and "errors" not in body
            started = time.perf_counter()
            json.loads(await pg.fetchval(floor_sql.PAGE, first, 0))
            t_sql = time.perf_counter() - started
            started = time.perf_counter()
            status, payload = await floor_http.request("GET", f"/page?first={first}")
            json.loads(payload)
            t_floor = time.perf_counter() - started
            if i >= 3:
                times["graphql_http"].append(t_graphql)
                times["sql"].append(t_sql)
                times["floor_http"].append(t_floor)
    finally:
        await http.close()
        await floor_http.close()
        await pg.close()
    result = {k: common.summary(v) for k, v in times.items()}
    return {
        "latency_ms": result,
        "raw_ms": {k: [x * 1000 for x in v] for k, v in times.items()},
        "ratio_graphql_to_sql": result["graphql_http"]["median"] / result["sql"]["median"],
        "ratio_graphql_to_floor_http": result["graphql_http"]["median"] / result["floor_http"]["median"],
        "response_bytes": len(json.dumps(sql_data)),
    }


async def read_mix(url: str, *, variants: int = 200) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The mixed read traffic, as GraphQL requests and as the floor app's equivalents (same data, checked)."""
    pg = await asyncpg.connect(url)
    rng = random.Random(7)
    try:
        deployments = await pg.fetch("SELECT id, seq FROM deployments ORDER BY seq")
        routes = [r["id"] for r in await pg.fetch("SELECT id FROM routes")]
        seqs = [0] + [r["seq"] for r in deployments[:-20]]
        lists = [rng.choice(seqs) for _ in range(50)]
        ones = [str(rng.choice(deployments)["id"]) for _ in range(variants)]
        route_ids = [str(rng.choice(routes)) for _ in range(variants)]
        checks = [
            (floor_sql.GQL_LIST, {"first": 20, "after": cursor(lists[0]) if lists[0] else None}, floor_sql.LIST,
             (20, lists[0])),
            (floor_sql.GQL_ONE, {"id": ones[0]}, floor_sql.ONE, (uuid.UUID(ones[0]),)),
            (floor_sql.GQL_ROUTE, {"id": route_ids[0]}, floor_sql.ROUTE, (uuid.UUID(route_ids[0]),)),
        ]  # fmt: skip
    finally:
        await pg.close()

    def gql(query: str, variables: dict[str, Any]) -> dict[str, str]:
        return {"method": "POST", "path": "/graphql", "body": json.dumps({"query": query, "variables": variables})}

    graphql = [
        {"kind": "list20", "weight": 30, "variants": [
            gql(floor_sql.GQL_LIST, {"first": 20, "after": cursor(s) if s else None}) for s in lists]},
        {"kind": "deployment", "weight": 50, "variants": [gql(floor_sql.GQL_ONE, {"id": i}) for i in ones]},
        {"kind": "route", "weight": 20, "variants": [gql(floor_sql.GQL_ROUTE, {"id": i}) for i in route_ids]},
    ]  # fmt: skip
    floor = [
        {"kind": "list20", "weight": 30, "variants": [
            {"method": "GET", "path": f"/deployments?first=20&after={s}"} for s in lists]},
        {"kind": "deployment", "weight": 50, "variants": [{"method": "GET", "path": f"/deployment/{i}"} for i in ones]},
        {"kind": "route", "weight": 20, "variants": [{"method": "GET", "path": f"/route/{i}"} for i in route_ids]},
    ]  # fmt: skip
    read_mix.checks = checks  # type: ignore[attr-defined]
    return graphql, floor


async def check_mix(url: str, server: common.Process) -> None:
    http = Connection("127.0.0.1", server.port or 0)
    pg = await asyncpg.connect(url)
    try:
        for query, variables, sql, args in read_mix.checks:  # type: ignore[attr-defined]
            _, body = await http.graphql(query, variables)
            assert body["data"] == json.loads(await pg.fetchval(sql, *args)), (query, body)
    finally:
        await http.close()
        await pg.close()


def run_loadgen(port: int, requests: list[dict[str, Any]], *, concurrency: int, warmup: float, duration: float) -> Any:
    config = {
        "host": "127.0.0.1",
        "port": port,
        "concurrency": concurrency,
        "warmup": warmup,
        "duration": duration,
        "requests": requests,
    }
    return common.run_module("bench.loadgen", f"loadgen-{port}", config)


async def measured_load(
    process: common.Process, url: str, requests: list[dict[str, Any]], **load: Any
) -> dict[str, Any]:
    """Run the load generator against `process`, with the CPU seconds the process and its database backends used."""
    backends = await common.backend_pids(url)
    server_cpu, pg_cpu = process.cpu_seconds(), common.cpu_of(backends)
    result = await asyncio.to_thread(run_loadgen, process.port or 0, requests, **load)
    result["server_cpu_seconds"] = process.cpu_seconds() - server_cpu
    result["postgres_cpu_seconds"] = common.cpu_of(backends) - pg_cpu
    return result


async def bench_throughput(
    url: str, server: common.Process, floor: common.Process, *, rounds: int, duration: float, concurrency: int
) -> dict[str, Any]:
    graphql, floor_requests = await read_mix(url)
    await check_mix(url, server)
    runs: list[dict[str, Any]] = []
    for i in range(rounds):
        for name, process, requests in (("switchover", server, graphql), ("floor", floor, floor_requests)):
            result = await measured_load(process, url, requests, concurrency=concurrency, warmup=2.0, duration=duration)
            result.update(name=name, round=i + 1)
            runs.append(result)
            print(f"  throughput {name} round {i + 1}: {result['rps']:.0f} req/s", flush=True)
    product = [r["rps"] for r in runs if r["name"] == "switchover"]
    bare = [r["rps"] for r in runs if r["name"] == "floor"]
    return {
        "runs": runs,
        "switchover_rps": statistics.median(product),
        "floor_rps": statistics.median(bare),
        "ratio": statistics.median(p / b for p, b in zip(product, bare, strict=True)),
        "concurrency": concurrency,
        "duration": duration,
        "mix": {r["kind"]: r["weight"] for r in graphql},
    }


async def profile_server(url: str, ids: list[str], *, seconds: float) -> dict[str, Any]:
    """The server under py-spy: once under the read mix, once answering promotions one after the other."""
    summaries: dict[str, Any] = {}
    graphql, _ = await read_mix(url)
    raw = common.WORK / "profile-server-reads.txt"
    raw.unlink(missing_ok=True)
    server = common.start_server(url, profile=raw, name="server-profiled")
    try:
        await asyncio.to_thread(run_loadgen, server.port or 0, graphql, concurrency=16, warmup=1.0, duration=seconds)
    finally:
        server.stop()
    summaries["reads"] = profiles.summarize(
        raw, "switchover serve under the mixed read load", must_contain="Handle._run"
    )
    raw = common.WORK / "profile-server-promote.txt"
    raw.unlink(missing_ok=True)
    server = common.start_server(url, profile=raw, name="server-profiled")
    http = Connection("127.0.0.1", server.port or 0)
    try:
        for deployment_id in ids:
            status, body = await http.graphql(PROMOTE, {"id": deployment_id})
            assert status == 200 and "errors" not in body, body
    finally:
        await http.close()
        server.stop()
    summaries["promote"] = profiles.summarize(
        raw, f"switchover serve answering {len(ids)} promoteDeployment one after the other", must_contain="Handle._run"
    )
    for name, summary in summaries.items():
        profiles.write_text(summary, common.BENCH / "profiles" / f"server-{name}.txt")
    return summaries


async def run(sampler: common.RssSampler, options: Any) -> dict[str, Any]:
    url = await common.create_database("api")
    db = open_database(url, max_size=10)
    await db.connect()
    results: dict[str, Any] = {}
    server = floor = None
    try:
        per_variant, warmup, profiled = options.promotions, 5, options.profile_promotions
        needed = 3 * (per_variant + warmup) + 1 + profiled
        started = time.perf_counter()
        ids = await fleet.rollout(db, needed, replicas=2)
        results["setup"] = {"deployments": needed, "seconds": time.perf_counter() - started}
        print(f"  {needed} deployments awaiting promotion in {results['setup']['seconds']:.1f} s", flush=True)
        profile_ids, ids = ids[:profiled], ids[profiled:]

        server = common.start_server(url)
        sampler.watch("server", server.target_pid())
        sampler.phase("1 promote")
        results["promote"] = await bench_promote(db, url, server, ids, count=per_variant, warmup=warmup)
        print(f"  promote: ratio {results['promote']['ratio_http_to_floor']:.2f}", flush=True)

        floor = common.start_floor(url)
        sampler.watch("floor app", floor.target_pid())
        sampler.phase("2 page")
        results["page"] = await bench_page(db, url, server, floor, repeat=options.page_repeat)
        print(f"  page: ratio {results['page']['ratio_graphql_to_sql']:.2f}", flush=True)

        sampler.phase("3 throughput")
        results["throughput"] = await bench_throughput(
            url, server, floor, rounds=options.rounds, duration=options.throughput_seconds, concurrency=16
        )
        sampler.unwatch("server")
        sampler.unwatch("floor app")
        server.stop()
        floor.stop()
        server = floor = None

        sampler.phase("profiling")
        results["profiles"] = await profile_server(url, profile_ids, seconds=options.profile_seconds)
    finally:
        for process in (server, floor):
            if process is not None:
                process.stop()
        await db.disconnect()
        await common.drop_database(url)
    return results


def main_for_debug() -> None:  # pragma: no cover - a quick manual run of this section
    from types import SimpleNamespace

    options = SimpleNamespace(
        promotions=30, profile_promotions=20, page_repeat=5, rounds=1, throughput_seconds=3, profile_seconds=3,
        experiment_repeat=3,
    )  # fmt: skip
    with common.RssSampler() as sampler:
        print(json.dumps(asyncio.run(run(sampler, options)), default=str)[:3000])
    print(sampler.peaks)


if __name__ == "__main__":
    main_for_debug()
