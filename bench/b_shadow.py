"""§9 Shadow traffic: what mirroring every request costs the caller, and what a green that never answers costs the
proxy's memory.

Measured twice, with the demo model answering at once (`instant`: its answer takes about 0.2 ms, so the proxy's own
work is most of the caller's latency and the ratio is one of proxy CPU, a copy's included) and with blue and green
both taking `REALISTIC_MODEL_SECONDS` to answer (`realistic`: REPLICA_ANSWER_DELAY_SECONDS, a model-serving endpoint's
order of magnitude). The targets are judged on `realistic` (JUDGED_ON; see bench/RESULTS.md) and both are reported.

Three deployments share one blue replica process: `off` (no shadow spec), `same` (shadow 100 % to a green replica
process that answers as fast as blue, and the same answer) and `never` (shadow 100 % to a green that accepts the
connection and never replies, bench/silent_green.py). Each has a `switchover proxy` process of its own, started as
the CLI starts it (its SWITCHOVER_SHADOW_* settings set to their defaults), so that one variant's copies in flight never
sit on another's event loop; a fourth proxy in front of `off`'s deployment (`control`) gives the noise floor. One
load generator process (bench/shadow_client.py) sends requests one at a time, to one proxy at a time in blocks of
2 s taking turns, `shadow_seconds` for each; this process samples each proxy's RSS from /proc meanwhile.
"""

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from bench import common, fleet
from bench.b_analysis import counted
from bench.http import Connection
from store import reads, route_health
from store.database import open_database
from store.models import BlueGreenSpec, DeploymentStrategyType, RouteStatus, ShadowSpec, Strategy
from switchover.settings import Settings

VARIANTS = ("off", "same", "never")
# Each has a proxy; so does `control`, a second proxy in front of `off`'s deployment: two identical proxies, whose
# ratio is the noise floor of this machine (processes placed differently on its 2 cores).
PROXIES = (*VARIANTS, "control")
IDENTITY = ("$.image", "$.revision", "$.route", "$.shadow")  # what differs between two replicas of the demo model
RSS_LIMIT_MIB = 150  # the proxy's, under a green that never answers (the server's and scheduler's target too)
BLOCK_SECONDS = 2.0  # each proxy's turn of load
DEFAULTS = Settings()
SHADOW_ENV = {  # given to every proxy: the figures are those of the defaults, whatever the bench's environment says
    "SWITCHOVER_SHADOW_TIMEOUT_SECONDS": str(DEFAULTS.shadow_timeout_seconds),
    "SWITCHOVER_SHADOW_MAX_BODY_BYTES": str(DEFAULTS.shadow_max_body_bytes),
    "SWITCHOVER_SHADOW_MAX_IN_FLIGHT": str(DEFAULTS.shadow_max_in_flight),
}
TARGETS = {"same_median": 1.1, "same_p99": 1.3, "never_p99": 1.1}
REALISTIC_MODEL_SECONDS = 0.005
MODELS = {"instant": 0.0, "realistic": REALISTIC_MODEL_SECONDS}  # each replica's REPLICA_ANSWER_DELAY_SECONDS
JUDGED_ON = "realistic"


def start_replica(route_id: str, revision: int, delay: float = 0.0) -> tuple[subprocess.Popen[bytes], str]:
    """The demo replica (switchover/replica.py) on a socket of ours, as the process runtime starts it, answering a
    POST after `delay` seconds."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    common.WORK.mkdir(parents=True, exist_ok=True)
    with (common.WORK / "shadow-replica.log").open("ab") as log:
        replica = subprocess.Popen(
            [sys.executable, "-m", "switchover.replica", "--fd", str(sock.fileno()), "--route", route_id,
             "--image", f"registry.local/model:{revision}", "--revision", str(revision)],
            pass_fds=[sock.fileno()], cwd=common.ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "REPLICA_ANSWER_DELAY_SECONDS": str(delay)},
        )  # fmt: skip
    sock.close()
    return replica, f"http://127.0.0.1:{port}"


def wait_listening(port: int, timeout: float = 30) -> None:
    """Until something accepts connections on `port` (the silent green answers nothing to probe with)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def rss_mib(pid: int) -> float:
    """VmRSS from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class RssSeries:
    """Each proxy's RSS every `interval` seconds, in a thread, from the start of the measured load to its end."""

    def __init__(self, pids: dict[str, int], interval: float = 0.5) -> None:
        self.pids, self.interval = pids, interval
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while True:
            for name, pid in self.pids.items():
                self.samples[name].append((time.monotonic() - started, rss_mib(pid)))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "RssSeries":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self, name: str) -> dict[str, float]:
        series = self.samples[name]
        tenth = [mib for t, mib in series if t <= series[-1][0] / 10] or [series[0][1]]
        return {
            "samples": len(series),
            "start_mib": series[0][1],
            "after_first_tenth_mib": max(tenth),
            "peak_mib": max(mib for _, mib in series),
            "end_mib": series[-1][1],
        }


async def shadow_outcomes(port: int) -> dict[str, float]:
    """The proxy's shadow counters: outcome or skip reason -> count."""
    connection = Connection("127.0.0.1", port)
    try:
        status, text = await connection.request("GET", "/metrics")
    finally:
        await connection.close()
    assert status == 200
    found: dict[str, float] = {}
    for line in text.decode().splitlines():
        if line.startswith(("switchover_proxy_shadow_requests_total{", "switchover_proxy_shadow_skipped_total{")):
            labels, value = line.rsplit(" ", 1)
            key = labels.split('outcome="')[-1].split('reason="')[-1].split('"')[0]
            found[key] = found.get(key, 0.0) + float(value)
    return found


async def mirroring(port: int, path: str, body: bytes, variant: str) -> None:
    """Until the proxy forwards to blue and, for a shadowed variant, mirrors: a copy counted, or (a green that never
    answers) copies skipped once the bound of copies in flight is reached."""
    connection = Connection("127.0.0.1", port)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                status, payload = await connection.request("POST", path, body)
                ready = status == 200 and b'"revision":1' in payload
            except OSError:
                ready = False
            if ready and (variant in ("off", "control") or await shadow_outcomes(port)):
                return
            assert time.monotonic() < deadline, f"{variant}: the proxy did not forward and mirror within 30 s"
            if not ready:
                await asyncio.sleep(0.1)
    finally:
        await connection.close()


async def run(sampler: common.RssSampler, options: Any) -> dict[str, Any]:
    url = await common.create_database("shadow")
    db = open_database(url, max_size=4)
    await db.connect()
    silent: common.Process | None = None
    try:
        spec = ShadowSpec(ignore_fields=IDENTITY)
        strategies = [
            Strategy(type=DeploymentStrategyType.BLUE_GREEN, blue_green_spec=BlueGreenSpec(shadow=shadow))
            for shadow in (None, spec, spec)
        ]
        # shadow-0 is `off`, shadow-1 `same`, shadow-2 `never`: revision 1 serving, revision 2 awaiting promotion.
        ids = await fleet.rollout(db, len(VARIANTS), replicas=1, strategies=strategies, prefix="shadow")
        silent_port = common.free_port()
        silent = common.start("shadow-silent-green", ["-m", "bench.silent_green", str(silent_port)], {},
                              port=silent_port)  # fmt: skip
        wait_listening(silent_port)
        models = {}
        for model, delay in MODELS.items():
            models[model] = await measure(sampler, options, db, url, ids, delay, f"http://127.0.0.1:{silent_port}")
            models[model]["model_seconds"] = delay
        return {"models": models, "judged_on": JUDGED_ON, "seconds": options.shadow_seconds,
                "block_seconds": BLOCK_SECONDS, "targets": TARGETS, "rss_limit_mib": RSS_LIMIT_MIB}  # fmt: skip
    finally:
        if silent is not None:
            silent.stop()
        await db.disconnect()
        await common.drop_database(url)


async def measure(
    sampler: common.RssSampler, options: Any, db: Any, url: str, ids: list[str], delay: float, silent_url: str
) -> dict[str, Any]:
    """One measurement: blue and green replica processes answering after `delay` s, a proxy per variant."""
    processes: list[subprocess.Popen[bytes]] = []
    proxies: dict[str, common.Process] = {}
    try:
        blue, blue_url = start_replica("blue", 1, delay)
        green, green_url = start_replica("green", 2, delay)
        processes += [blue, green]
        greens = {"off": green_url, "same": green_url, "never": silent_url}
        deployments = await reads.deployments_by_ids(db, ids)
        routes = await reads.routes_of_deployments(db, ids)
        for variant, deployment in zip(VARIANTS, ids, strict=True):
            for route in routes[deployment]:
                serving = route.revision_id == deployments[deployment].current_revision_id
                endpoint = blue_url if serving else greens[variant]
                await route_health.report_route_health(db, route.id, RouteStatus.HEALTHY, endpoint_url=endpoint,
                                                       actor="orchestrator")  # fmt: skip
        for variant in PROXIES:
            port = common.free_port()
            proxies[variant] = common.start(f"shadow-proxy-{variant}", ["-m", "switchover", "proxy", "--port",
                                            str(port)], {"DATABASE_URL": url, **SHADOW_ENV}, port=port)  # fmt: skip
        for variant, process in proxies.items():
            common.wait_http(process, "/health")
            sampler.watch(f"proxy-{variant}", process.target_pid())
        sampler.phase("9 shadow")
        body = '{"features": [1, 2, 3]}'
        paths = {variant: f"/shadow-{i}/v1/predict" for i, variant in enumerate(VARIANTS)}
        paths["control"] = paths["off"]
        for variant, process in proxies.items():
            await mirroring(process.port or 0, paths[variant], body.encode(), variant)
        before = {v: await shadow_outcomes(p.port or 0) for v, p in proxies.items()}
        requests_before = {v: await counted(p.port or 0) for v, p in proxies.items()}
        config = {
            "targets": {v: [p.port, paths[v]] for v, p in proxies.items()},
            "body": body,
            "warmup": 300,
            "seconds": options.shadow_seconds,
            "block_seconds": BLOCK_SECONDS,
        }
        cpu_before = {v: p.cpu_seconds() for v, p in proxies.items()}
        with RssSeries({v: p.target_pid() for v, p in proxies.items()}) as rss:
            load = await asyncio.to_thread(common.run_module, "bench.shadow_client", "shadow-client", config)
        cpu = {v: p.cpu_seconds() - cpu_before[v] for v, p in proxies.items()}
        after = {v: await shadow_outcomes(p.port or 0) for v, p in proxies.items()}
        requests = {v: await counted(p.port or 0) - requests_before[v] for v, p in proxies.items()}
        latency = load["latency_ms"]
        off = latency["off"]
        shadow = {v: {k: after[v].get(k, 0) - before[v].get(k, 0) for k in after[v]} for v in PROXIES}
        assert shadow["off"] == shadow["control"] == {}, shadow  # nothing mirrored without a shadow spec
        assert shadow["same"].get("disagreed", 0) == 0, shadow  # the same model agrees
        return {
            "seconds": options.shadow_seconds,
            "blocks": load["blocks"],
            "block_seconds": BLOCK_SECONDS,
            "requests": requests,
            "latency_ms": latency,
            "ratio": {
                "same_median": latency["same"]["median"] / off["median"],
                "same_p99": latency["same"]["p99"] / off["p99"],
                "never_median": latency["never"]["median"] / off["median"],
                "never_p99": latency["never"]["p99"] / off["p99"],
                "control_median": latency["control"]["median"] / off["median"],
                "control_p99": latency["control"]["p99"] / off["p99"],
            },
            "targets": TARGETS,
            "shadow_outcomes": shadow,
            "rss_mib": {v: rss.figures(v) for v in PROXIES},
            "rss_limit_mib": RSS_LIMIT_MIB,
            "proxy_settings": {
                "shadow_timeout_seconds": DEFAULTS.shadow_timeout_seconds,
                "shadow_max_body_bytes": DEFAULTS.shadow_max_body_bytes,
                "shadow_max_in_flight": DEFAULTS.shadow_max_in_flight,
            },
            "cpu_seconds": cpu,
            # What one caller's request costs the proxy, mirroring included: the reason behind the latency ratios.
            "cpu_ms_per_request": {v: 1000 * cpu[v] / requests[v] for v in PROXIES},
        }
    finally:
        for variant, process in proxies.items():
            sampler.unwatch(f"proxy-{variant}")
            process.stop()
        for replica in processes:
            replica.terminate()
            replica.wait(timeout=10)
