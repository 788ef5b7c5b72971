"""§10 tracing: what OpenTelemetry costs a request, off (no OTEL_* variable: the product as shipped) and on.

Four `switchover serve --insecure` processes on one database, answering the same requests one after the other,
interleaved (one request to each in turn, so that drift hits all alike):
- `off` and `off_again`: no OTEL_* variable. Two of them: their difference is what this machine can measure at all.
- `on_unsampled`: an OTLP endpoint set and `OTEL_TRACES_SAMPLER=always_off` (everything wired in, nothing recorded);
- `on`: an OTLP endpoint set, every request sampled and exported to a sink in this process (OTLP/HTTP, protobuf).
Requests: a planned read (`deployment(id)`: an operation span and one SQL span) and `addRevision` (a resolver span
and its statements). Reported: latency per variant and kind, ratios to `off`, and each server's CPU seconds.
"""

import asyncio
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench import common, fleet, floor_sql
from bench.http import Connection
from store.database import open_database

ADD_REVISION = """mutation($id: ID!, $image: String!) {
  addRevision(input: {deploymentId: $id, image: $image}) { revision { id number } } }"""
VARIANTS = ("off", "off_again", "on_unsampled", "on")


class Sink:
    """An OTLP/HTTP endpoint that accepts every export and counts the bytes (what a collector would receive)."""

    def __init__(self) -> None:
        self.exports = 0
        self.bytes = 0
        self.received = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                sink.exports += 1
                sink.bytes += len(body)
                sink.received.set()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(url: str, variant: str, sink: Sink) -> common.Process:
    env = {"DATABASE_URL": url}
    if variant.startswith("on"):
        env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_SERVICE_NAME": f"bench-{variant}"}
    if variant == "on_unsampled":
        env["OTEL_TRACES_SAMPLER"] = "always_off"
    port = common.free_port()
    process = common.start(f"tracing-{variant}", ["-m", "switchover", "serve", "--insecure", "--port", str(port)], env,
                           port=port)  # fmt: skip
    common.wait_http(process)
    return process


async def run(sampler: common.RssSampler, options: Any) -> dict[str, Any]:
    if any(name.startswith("OTEL_") for name in os.environ):
        raise RuntimeError("unset the OTEL_* variables first: the `off` servers must run without them")
    url = await common.create_database("tracing")
    db = open_database(url, max_size=4)
    await db.connect()
    sink = Sink()
    servers: dict[str, common.Process] = {}
    connections: dict[str, Connection] = {}
    try:
        ids = await fleet.rollout(db, 20, replicas=1, awaiting=False)
        for variant in VARIANTS:
            servers[variant] = start(url, variant, sink)
            connections[variant] = Connection("127.0.0.1", servers[variant].port or 0)
        count, warmup = options.tracing_requests, 50
        times: dict[str, dict[str, list[float]]] = {v: {"read": [], "write": []} for v in VARIANTS}
        cpu: dict[str, float] = {}
        for i in range(warmup + count):
            if i == warmup:
                cpu = {v: servers[v].cpu_seconds() for v in VARIANTS}
            deployment_id = ids[i % len(ids)]
            for kind, query, variables in (
                ("read", floor_sql.GQL_ONE, {"id": deployment_id}),
                ("write", ADD_REVISION, {"id": deployment_id, "image": f"bench:{i}"}),
            ):
                for variant in VARIANTS:
                    started = time.perf_counter()
                    status, body = await connections[variant].graphql(query, variables)
                    elapsed = time.perf_counter() - started
                    assert status == 200 and "errors" not in body, body
                    if i >= warmup:
                        times[variant][kind].append(elapsed)
        cpu = {v: servers[v].cpu_seconds() - cpu[v] for v in VARIANTS}
        # The `on` server exports in batches every 5 s (OTEL_BSP_SCHEDULE_DELAY): wait for the first one.
        await asyncio.to_thread(sink.received.wait, 15)
    finally:
        for connection in connections.values():
            await connection.close()
        for process in servers.values():
            process.stop()
        sink.close()
        await db.disconnect()
        await common.drop_database(url)
    latency = {v: {k: common.summary(t) for k, t in kinds.items()} for v, kinds in times.items()}
    ratios = {
        v: {k: latency[v][k]["median"] / latency["off"][k]["median"] for k in ("read", "write")} for v in VARIANTS
    }
    result = {
        "requests_per_kind": count,
        "latency_ms": latency,
        "ratio_to_off": ratios,
        "server_cpu_seconds": cpu,
        "cpu_ratio_to_off": {v: cpu[v] / cpu["off"] for v in VARIANTS},
        "exported": {"requests": sink.exports, "bytes": sink.bytes},
    }
    for variant in VARIANTS:
        print(f"  tracing {variant}: read x{ratios[variant]['read']:.3f}, write x{ratios[variant]['write']:.3f}, "
              f"cpu x{result['cpu_ratio_to_off'][variant]:.3f}", flush=True)  # fmt: skip
    return result


def main_for_debug() -> None:  # pragma: no cover - a quick manual run of this section
    from types import SimpleNamespace

    with common.RssSampler() as sampler:
        print(json.dumps(asyncio.run(run(sampler, SimpleNamespace(tracing_requests=200))), default=str)[:3000])
