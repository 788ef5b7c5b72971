"""`make run`: a live blue-green rollout on one machine, narrated.

Starts the embedded PostgreSQL (or uses DATABASE_URL), migrates it, starts the subgraph, the scheduler (process
runtime: every route is a real local replica process, health-checked over HTTP) and the traffic proxy, then rolls a
deployment out at revision 1, sends it requests, rolls revision 2 out beside it, promotes it under load, and shows that
every request was answered: first by revision 1, then by revision 2. Revision 3 (a share of 500s) is reverted by its
post-promotion analysis; revision 4, whose model drifts on some answers, is held back by shadow traffic: the proxy
mirrors every request to it, its answers disagree with revision 2's, the pre-promotion `shadow-agreement-rate` check
fails and it is rolled back before any caller saw it; the disagreements found are printed. Every process it started is
stopped at the end, also on Ctrl-C.

With `--dataplane haproxy` (`make run DATAPLANE=haproxy`) a real HAProxy carries the traffic instead: the demo starts
it with the README's minimal configuration (written to a temporary directory, free ports), `switchover haproxy`
keeping its servers and weights in step with the routes, and a Prometheus scraping HAProxy's own exporter, which the
post-promotion analyses read (PROMETHEUS checks on the revision's servers, `{{routes}}`). Mirroring is the built-in
proxy's feature: the shadow-traffic chapter still goes through `switchover proxy`, and says so. Without haproxy or
prometheus installed it says so and runs the built-in proxy alone.

A terminal's Ctrl-C sends SIGINT to the whole foreground process group: the demo and its three services stop at
once. Each service stops cleanly on it; the replicas, in sessions of their own, keep serving (a scheduler restart is
no outage); the demo, whatever SIGINT disposition it inherited, cleans up, kills every replica of its run and exits.
"""

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx
import psutil

from store.database import migrate
from switchover import cli
from switchover.settings import Settings, from_environment

PROJECT = "6f1c2a7e-0d4b-4f7e-9a51-3c0e8d2b9a10"
STARTED = time.monotonic()
RUN_MARKER = "SWITCHOVER_DEMO_RUN"  # in the environment of every process this run starts, replicas included
STOP_WAIT_SECONDS = 10  # for the services to exit after SIGTERM, before SIGKILL
# What differs between two replicas of the demo model whatever they predict: left out when answers are compared.
IDENTITY_FIELDS = ["$.image", "$.revision", "$.route", "$.shadow"]
DRIFT_PERCENT = 5  # revision 4 flips this share of its predictions: health and success rate cannot tell
REVIEWS = [b"great!", b"terrible service", b"works as promised", b"meh", b"would buy again", b"broke in a week"]
DEPLOYMENT = "sentiment-demo"
BUILTIN, HAPROXY = "builtin", "haproxy"
# The share of non-5xx answers the revision's servers gave since HAProxy added them (their counters are the
# revision's own: servers are named after its routes); no answer yet gives no number rather than 0/0.
HAPROXY_ANSWERS = 'haproxy_server_http_responses_total{proxy="{{deployment}}", server=~"{{routes}}"'
HAPROXY_SUCCESS_RATE = f'100 * (1 - sum({HAPROXY_ANSWERS}, code="5xx"}}) / (sum({HAPROXY_ANSWERS}}}) > 0))'


def strategy(*, shadow: bool, dataplane: str = BUILTIN) -> dict[str, Any]:
    """Blue-green; after each promotion an analysis of the success rate the data plane measures (the built-in proxy's
    own count, or HAProxy's exporter read through Prometheus). With `shadow`, every request is also mirrored to green,
    its answers compared as JSON without the identity fields, and it is promoted only once 3 checks 2 s apart each saw
    at least 99 % of at least 100 requests mirrored in their interval agree."""

    def analysis(name: str, query: str, minimum: float, provider: str = "BUILTIN") -> dict[str, Any]:
        metric: dict[str, Any] = {"name": name, "provider": provider, "query": query, "min": minimum}
        return {"initialDelaySeconds": 2, "intervalSeconds": 2, "count": 3, "metrics": [metric]}

    success = (
        analysis("success-rate", HAPROXY_SUCCESS_RATE, 95, "PROMETHEUS")
        if dataplane == HAPROXY
        else analysis("success-rate", "request-success-rate", 95)
    )
    blue_green: dict[str, Any] = {"scaleDownDelaySeconds": 5, "postPromotionAnalysis": success}
    if shadow:
        blue_green["shadow"] = {"percent": 100, "compare": "JSON", "ignoreFields": IDENTITY_FIELDS}
        agreement = analysis("shadow-agreement", "shadow-agreement-rate", 99)
        agreement["metrics"][0]["minRequests"] = 100  # fewer mirrored requests in a check's interval: no number
        blue_green["prePromotionAnalysis"] = agreement
    return {"type": "BLUE_GREEN", "blueGreen": blue_green}


# The newest analysis run, and the shadow statistics of the revision being deployed (null when none is).
ANALYSIS = """query($d: ID!) { deployment(id: $d) {
  shadowStats { requests agreed disagreed greenErrors samples { request blueAnswer greenAnswer } }
  analysisRuns(first: 1) { edges { node { phase revision { number } measurements { metric value passed message } } } }
} }"""


class DemoFailed(Exception):
    """The rollout did not go as narrated; the message says why."""


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def installed(name: str, debian_path: str) -> str | None:
    return shutil.which(name) or (debian_path if os.access(debian_path, os.X_OK) else None)


class HaproxyPlane:
    """HAProxy with the README's minimal configuration for the demo deployment (and its exporter frontend), and a
    Prometheus scraping that exporter every second, in a temporary directory of their own."""

    def __init__(self, haproxy: str, prometheus: str, port: int) -> None:
        # Short: a UNIX socket path must fit in 108 bytes.
        self.directory = tempfile.mkdtemp(prefix="switchover-demo-")
        self.socket = os.path.join(self.directory, "admin.sock")
        self.port, self.metrics_port, self.prometheus_port = port, free_port(0), free_port(0)
        config = os.path.join(self.directory, "haproxy.cfg")
        with open(config, "w") as f:
            f.write(f"""global
    stats socket {self.socket} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1

frontend models
    bind 127.0.0.1:{port}
    http-request set-var(req.deployment) path,field(2,/)
    http-request set-path %[path,regsub(^/[^/]*/?,/)]
    use_backend %[var(req.deployment)].preview if {{ req.hdr(x-switchover-preview) -m str 1 }}
    use_backend %[var(req.deployment)]

backend {DEPLOYMENT}
    balance roundrobin
backend {DEPLOYMENT}.preview
    balance roundrobin

frontend metrics
    bind 127.0.0.1:{self.metrics_port}
    http-request use-service prometheus-exporter if {{ path /metrics }}
""")
        scrape = os.path.join(self.directory, "prometheus.yml")
        with open(scrape, "w") as f:
            f.write(f"""global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs: [{{job_name: haproxy, static_configs: [{{targets: ["127.0.0.1:{self.metrics_port}"]}}]}}]
""")
        self.haproxy = [haproxy, "-db", "-f", config]
        self.prometheus = [
            prometheus,
            f"--config.file={scrape}",
            f"--storage.tsdb.path={os.path.join(self.directory, 'data')}",
            f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def answers_counted(self, expected: int) -> int:
        """The answers HAProxy gave for the demo deployment, as its exporter counts them. HAProxy counts an answer
        when its stream ends, which can be just after the caller has it: read until `expected` or 2 s passed."""
        pattern = rf'^haproxy_backend_http_responses_total\{{proxy="{re.escape(DEPLOYMENT)}",code="[^"]+"\}} (\S+)$'
        deadline = time.monotonic() + 2
        while True:
            text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
            counted = int(sum(float(n) for n in re.findall(pattern, text, re.M)))
            if counted >= expected or time.monotonic() > deadline:
                return counted
            time.sleep(0.05)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def choose_dataplane(requested: str, proxy_port: int) -> HaproxyPlane | None:
    """HAProxy when asked for and installed (with Prometheus, whose numbers the analyses read); None: the built-in
    proxy alone."""
    if requested != HAPROXY:
        return None
    haproxy, prometheus = installed("haproxy", "/usr/sbin/haproxy"), installed("prometheus", "/usr/bin/prometheus")
    if haproxy is None or prometheus is None:
        missing = " and ".join(n for n, path in (("haproxy", haproxy), ("prometheus", prometheus)) if path is None)
        say(f"DATAPLANE=haproxy, but {missing} is not installed (Debian: apt-get install haproxy prometheus): "
            "the built-in proxy carries the traffic instead")  # fmt: skip
        return None
    return HaproxyPlane(haproxy, prometheus, proxy_port)


class Services:
    """The subgraph, scheduler and proxy as child processes of this one (and HAProxy, `switchover haproxy` and
    Prometheus with `plane`)."""

    def __init__(self, database_url: str, api_port: int, proxy_port: int, plane: HaproxyPlane | None = None) -> None:
        self.run_id = uuid.uuid4().hex
        self.env = {
            **os.environ,
            RUN_MARKER: self.run_id,
            "DATABASE_URL": database_url,
            "SWITCHOVER_RUNTIME": "process",
            "SWITCHOVER_POLL_INTERVAL": "0.2",
            "SWITCHOVER_HEALTH_INTERVAL": "0.3",
            "SWITCHOVER_STOP_GRACE": "2",
            "SWITCHOVER_INTROSPECTION": "true",  # GraphiQL needs it
            "SWITCHOVER_PROXY_FLUSH_SECONDS": "0.5",  # the analysis reads what the proxy counted, fresh
        }
        self.api = f"http://127.0.0.1:{api_port}"
        self.proxy = f"http://127.0.0.1:{proxy_port}"
        self.plane = plane
        self.traffic = plane.url if plane else self.proxy  # where the demo's requests go (but for shadow traffic)
        switchover = [sys.executable, "-m", "switchover"]
        self.commands = {
            # A demo on one machine: no tokens. Production sets SWITCHOVER_JWT_SECRET instead of --insecure.
            "subgraph": [*switchover, "serve", "--port", str(api_port), "--insecure"],
            "scheduler": [*switchover, "scheduler"],
            "proxy": [*switchover, "proxy", "--port", str(proxy_port)],
        }
        if plane is not None:
            self.proxy = f"http://127.0.0.1:{free_port(proxy_port + 1)}"  # HAProxy has the port asked for
            self.commands["proxy"] = [*switchover, "proxy", "--port", self.proxy.rsplit(":", 1)[1]]
            self.env["SWITCHOVER_PROMETHEUS_URL"] = plane.prometheus_url
            # HAProxy first: `switchover haproxy` refuses to start without its runtime API.
            self.commands = {
                "haproxy": plane.haproxy,
                "prometheus": plane.prometheus,
                **self.commands,
                "haproxy follower": [*switchover, "haproxy", "--socket", plane.socket],
            }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, log_dir: str) -> None:
        for name, command in self.commands.items():
            if name == "haproxy follower" and self.plane is not None:
                self.wait_for_runtime_api(self.plane.socket)
            with open(os.path.join(log_dir, f"{name.replace(' ', '-')}.log"), "ab") as log:
                self.processes[name] = subprocess.Popen(
                    command,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )

    def wait_for_runtime_api(self, path: str, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while not os.path.exists(path):
            self.check_alive()
            if time.monotonic() > deadline:
                raise DemoFailed(f"HAProxy did not open its runtime API within {within:.0f} s")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM to each service, SIGKILL to any still running after `STOP_WAIT_SECONDS`, then SIGKILL to the
        replicas of this run (a scheduler leaves them serving, for the next one to adopt)."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.kill_leftover_replicas()
        if self.plane is not None:
            self.plane.remove()

    def kill_leftover_replicas(self) -> None:
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if process.environ().get(RUN_MARKER) == self.run_id:
                    process.kill()

    def alive(self, name: str) -> bool:
        return self.processes[name].poll() is None

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise DemoFailed(f"the {name} exited (code {process.returncode}); see its log in .switchover/logs")


class Demo:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.http = httpx.AsyncClient(timeout=10)
        self.deployment_id: str | None = None
        self.shadowed: Counter[str] = Counter()  # answers the callers got while revision 4 was mirrored to
        self.shadow_stats: dict[str, Any] | None = None  # the last `shadowStats` seen while revision 4 deployed
        self.dataplane = HAPROXY if services.plane is not None else BUILTIN
        self.through = "HAProxy" if services.plane is not None else "the proxy"
        self.sent_through_plane = 0  # answers the demo had from the data plane (HAProxy or the built-in proxy)

    async def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post(f"{self.services.api}/graphql", json={"query": query, "variables": variables})
        body = response.json()
        if body.get("errors"):
            raise DemoFailed(f"GraphQL error: {body['errors'][0]['message']}")
        return body["data"]

    async def wait_until_up(self) -> None:
        deadline = time.monotonic() + 60
        urls = [f"{self.services.api}/ready", f"{self.services.proxy}/health"]
        if self.services.plane is not None:
            urls += [f"{self.services.plane.prometheus_url}/-/ready"]
        for url in urls:
            while True:
                self.services.check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if (await self.http.get(url)).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise DemoFailed(f"{url} did not come up within 60 s")
                await asyncio.sleep(0.1)

    async def snapshot(self) -> dict[str, Any]:
        data = await self.gql(
            """query($id: ID!) { deployment(id: $id) {
                 lifecycle subStep currentRevision { number } deployingRevision { number }
                 routes { id status trafficStatus trafficRatio revision { number } }
               } }""",
            id=self.deployment_id,
        )
        return data["deployment"]

    async def follow(self, until: str, *, within: float = 90) -> None:
        """Print every change of state and of routes until the deployment reaches `until`."""
        deadline, last = time.monotonic() + within, ""
        while True:
            self.services.check_alive()
            d = await self.snapshot()
            state = d["lifecycle"] + (f"/{d['subStep']}" if d["subStep"] else "")
            live = [r for r in d["routes"] if r["status"] not in ("TERMINATED",)]
            routes = ", ".join(
                f"r{r['revision']['number']}:{r['status'].lower()}" + ("*" if r["trafficStatus"] == "ACTIVE" else "")
                for r in live
            )
            line = f"{state:40} routes [{routes}]"
            if line != last:
                say(line)
                last = line
            if state == until:
                return
            if time.monotonic() > deadline:
                raise DemoFailed(f"the deployment did not reach {until} within {within:.0f} s")
            await asyncio.sleep(0.2)

    async def requests(self, count: int) -> Counter[str]:
        seen: Counter[str] = Counter()
        for _ in range(count):
            seen[await self.predict()] += 1
        return seen

    async def predict(self, body: bytes = b"great!", *, through: str | None = None) -> str:
        try:
            url = f"{through or self.services.traffic}/{DEPLOYMENT}/v1/predict"
            response = await self.http.post(url, content=body)
            self.sent_through_plane += through is None  # answered: a request cut short by a stop may go uncounted
        except httpx.HTTPError as exc:
            return f"failed ({type(exc).__name__})"
        if response.status_code != 200:
            with contextlib.suppress(ValueError, KeyError, TypeError):  # a replica's own 500 says who it is
                return f"failed ({response.status_code}) by revision {response.json()['revision']}"
            return f"failed ({response.status_code})"
        return f"revision {response.json()['revision']}"

    async def load(
        self,
        stop: asyncio.Event,
        seen: Counter[str],
        bodies: Sequence[bytes] = (b"great!",),
        *,
        through: str | None = None,
    ) -> None:
        n = 0
        while not stop.is_set():
            seen[await self.predict(bodies[n % len(bodies)], through=through)] += 1
            n += 1

    async def run(self) -> Counter[str]:
        await self.wait_until_up()
        plane = self.services.plane
        if plane is None:
            say(f"subgraph {self.services.api}/graphql, proxy {self.services.proxy}, scheduler with the process "
                "runtime; data plane: the built-in proxy (switchover proxy)")  # fmt: skip
        else:
            say(f"subgraph {self.services.api}/graphql, scheduler with the process runtime; data plane: HAProxy at "
                f"{plane.url} (servers and weights set by `switchover haproxy` through its runtime API, config in "
                f"{plane.directory}); Prometheus at {plane.prometheus_url} scrapes HAProxy's exporter for the "
                f"analyses; the built-in proxy at {self.services.proxy} only for the shadow-traffic chapter")  # fmt: skip
        old = await self.gql(
            "query($p: ID!) { deployments(projectId: $p, lifecycle: [PENDING, READY, DEPLOYING, DESTROYING]) "
            "{ edges { node { id name } } } }",
            p=PROJECT,
        )
        for edge in old["deployments"]["edges"]:
            if edge["node"]["name"] == DEPLOYMENT:  # left over from an interrupted run: its name must be free
                say("retiring the sentiment-demo deployment an interrupted run left behind")
                await self.retire(edge["node"]["id"], within=60)
        created = await self.gql(
            """mutation($p: ID!, $s: DeploymentStrategyInput!) { createDeployment(input: {projectId: $p,
                 name: "sentiment-demo", replicas: 2, strategy: $s}) { deployment { id } } }""",
            p=PROJECT,
            s=strategy(shadow=False, dataplane=self.dataplane),
        )
        self.deployment_id = created["createDeployment"]["deployment"]["id"]
        measured = "HAProxy counts for the revision's servers (read from Prometheus)" if plane else "the proxy measures"
        say(f"created blue-green deployment sentiment-demo ({self.deployment_id}), 2 replicas; after each promotion "
            f"a post-promotion analysis checks the success rate {measured} (at least 95 %, 3 checks, 2 s "
            "apart) and reverts the promotion by itself if it falls short")  # fmt: skip

        v1 = await self.add_revision("registry.local/sentiment:1.0", {})
        say("deploying revision 1 (first deploy: promoted as soon as both replicas are healthy)")
        await self.deploy(v1)
        await self.follow("READY")
        say(f"10 requests through {self.through}: {dict(await self.requests(10))}")

        v2 = await self.add_revision("registry.local/sentiment:2.0", {"REPLICA_START_DELAY_SECONDS": "1"})
        say("deploying revision 2 beside it: green replicas start without traffic")
        await self.deploy(v2)
        await self.follow("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
        say("green is healthy and idle; revision 1 still answers everything. Sending requests continuously…")
        seen: Counter[str] = Counter()
        stop = asyncio.Event()
        load = asyncio.create_task(self.load(stop, seen))
        try:
            await self.promote_under_load(v2, 2)
            phase = await self.analysis_ended(2)
            if phase != "SUCCESSFUL":
                raise DemoFailed(f"the post-promotion analysis of revision 2 ended {phase}")
            say("the analysis passed: the blue routes of revision 1 now drain")

            v3 = await self.add_revision("registry.local/sentiment:3.0-rc", {"REPLICA_ERROR_PERCENT": "20"})
            say("deploying revision 3, whose replicas answer 20 % of requests with a 500: their health checks pass")
            await self.deploy(v3)
            await self.follow("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
            await self.promote_under_load(v3, 3)
            phase = await self.analysis_ended(3)
            await self.follow_current(2)
            say(f"the post-promotion analysis of revision 3 ended {phase}: the scheduler REVERTED to revision 2 "
                "by itself")  # fmt: skip
            await asyncio.sleep(1)
        finally:
            stop.set()
            load.cancel()  # interrupted: it must not outlive the HTTP client it uses
            with contextlib.suppress(asyncio.CancelledError):
                await load
        await self.follow("READY")
        await self.hold_back_drifting_revision()
        return seen

    async def hold_back_drifting_revision(self) -> None:
        """Revision 4 answers every request (health checks and success rate would pass it) but its model flips some
        predictions: mirrored traffic shows it, and the pre-promotion analysis rolls it back before anyone sees it."""
        await self.gql(
            """mutation($d: ID!, $s: DeploymentStrategyInput!) { updateDeploymentStrategy(input: {deploymentId: $d,
                 strategy: $s}) { deployment { id } } }""",
            d=self.deployment_id,
            s=strategy(shadow=True, dataplane=self.dataplane),
        )
        if self.services.plane is not None:
            say(f"mirroring requests is the built-in proxy's feature, not HAProxy's: this chapter's requests go "
                f"through switchover proxy at {self.services.proxy}")  # fmt: skip
        say(f"shadow traffic from now on: the proxy mirrors every request to a revision being deployed and compares "
            f"the answers as JSON (ignoring {', '.join(IDENTITY_FIELDS)}); a pre-promotion analysis demands at least "
            f"99 % agreement over at least 100 mirrored requests, 3 checks 2 s apart")  # fmt: skip
        v4 = await self.add_revision("registry.local/sentiment:4.0-rc", {"REPLICA_DRIFT_PERCENT": str(DRIFT_PERCENT)})
        say(f"deploying revision 4, whose model flips {DRIFT_PERCENT} % of its predictions: it answers every request "
            "with a 200, so health checks and the success rate cannot tell. Sending varied requests continuously…")  # fmt: skip
        stop = asyncio.Event()
        load = asyncio.create_task(self.load(stop, self.shadowed, REVIEWS, through=self.services.proxy))
        try:
            await self.deploy(v4)
            await self.follow("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
            await self.try_to_promote(v4)
            phase = await self.analysis_ended(4)
            await self.follow("READY")
        finally:
            stop.set()
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load
        current = (await self.snapshot())["currentRevision"]["number"]
        if phase == "SUCCESSFUL" or current != 2:
            raise DemoFailed(f"revision 4's pre-promotion analysis ended {phase}, revision {current} serves")
        say(f"the pre-promotion analysis of revision 4 ended {phase}: revision 4 was ROLLED BACK before any caller "
            "saw one of its answers; revision 2 kept serving")  # fmt: skip
        self.show_disagreements()

    async def try_to_promote(self, revision_id: str) -> None:
        """An operator's promotion while the analysis runs: refused (without `skipAnalysis`)."""
        response = await self.http.post(
            f"{self.services.api}/graphql",
            json={
                "query": "mutation($d: ID!, $r: ID!) { promoteDeployment(input: {deploymentId: $d, "
                "expectedRevisionId: $r}) { promotedRoutes { id } } }",
                "variables": {"d": self.deployment_id, "r": revision_id},
            },
        )
        errors = response.json().get("errors")
        if not errors:
            raise DemoFailed("revision 4 was promoted by hand although its pre-promotion analysis had not passed")
        code = errors[0].get("extensions", {}).get("code")
        say(f"an operator tries to promote revision 4 meanwhile: refused, {code}: {errors[0]['message']}")

    def show_disagreements(self) -> None:
        stats = self.shadow_stats
        if not stats or not stats["samples"]:
            raise DemoFailed(f"no disagreement of revision 4 was recorded: {stats}")
        say(f"shadow traffic of revision 4, as last read before the rollback: {stats['requests']} mirrored requests, "
            f"{stats['agreed']} agreed, {stats['disagreed']} disagreed, {stats['greenErrors']} green errors; "
            "the newest disagreements:")  # fmt: skip
        for sample in stats["samples"][:3]:
            for label, key in (("request", "request"), ("blue answer", "blueAnswer"), ("green answer", "greenAnswer")):
                print(f"    {label:>13}: {' '.join(sample[key].split())[:200]}")
            print()

    async def promote_under_load(self, revision_id: str, number: int) -> None:
        await asyncio.sleep(2)
        promoted = await self.gql(
            """mutation($d: ID!, $r: ID!) { promoteDeployment(input: {deploymentId: $d, expectedRevisionId: $r}) {
                 promotedRoutes { id } drainedRoutes { id } } }""",
            d=self.deployment_id,
            r=revision_id,
        )
        result = promoted["promoteDeployment"]
        say(f"PROMOTED revision {number}: {len(result['promotedRoutes'])} routes active, "
            f"{len(result['drainedRoutes'])} old routes kept warm while the post-promotion analysis runs")  # fmt: skip

    async def analysis_ended(self, number: int, *, within: float = 60) -> str:
        """Narrate the measurements of the newest analysis run, once it is revision `number`'s, until it ends;
        returns its phase. Keeps the last shadow statistics seen: they belong to the revision being deployed, and
        are gone (null) once it is rolled back."""
        deadline, shown = time.monotonic() + within, 0
        while True:
            self.services.check_alive()
            data = await self.gql(ANALYSIS, d=self.deployment_id)
            if data["deployment"]["shadowStats"]:
                self.shadow_stats = data["deployment"]["shadowStats"]
            edges = data["deployment"]["analysisRuns"]["edges"]
            if not edges or edges[0]["node"]["revision"]["number"] != number:  # its run has not started yet
                if time.monotonic() > deadline:
                    raise DemoFailed(f"no analysis of revision {number} started within {within:.0f} s")
                await asyncio.sleep(0.3)
                continue
            run = edges[0]["node"]
            for m in run["measurements"][shown:]:
                verdict = {True: "pass", False: "FAIL", None: "no number"}[m["passed"]]
                say(f"  analysis of revision {run['revision']['number']}: {m['metric']} {verdict}: {m['message']}")
            shown = len(run["measurements"])
            if run["phase"] != "RUNNING":
                return run["phase"]
            if time.monotonic() > deadline:
                raise DemoFailed(f"the analysis did not end within {within:.0f} s")
            await asyncio.sleep(0.3)

    async def follow_current(self, number: int, *, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while (await self.snapshot())["currentRevision"]["number"] != number:
            if time.monotonic() > deadline:
                raise DemoFailed(f"revision {number} did not serve again within {within:.0f} s")
            await asyncio.sleep(0.2)

    async def add_revision(self, image: str, env: dict[str, str]) -> str:
        data = await self.gql(
            "mutation($d: ID!, $i: String!, $e: JSON) { addRevision(input: {deploymentId: $d, image: $i, env: $e}) "
            "{ revision { id } } }",
            d=self.deployment_id,
            i=image,
            e=env,
        )
        return data["addRevision"]["revision"]["id"]

    async def deploy(self, revision_id: str) -> None:
        await self.gql(
            "mutation($d: ID!, $r: ID!) { deployRevision(input: {deploymentId: $d, revisionId: $r}) "
            "{ deployment { id } } }",
            d=self.deployment_id,
            r=revision_id,
        )

    async def destroy(self, deployment_id: str) -> None:
        await self.gql(
            "mutation($d: ID!) { destroyDeployment(input: {deploymentId: $d}) { deployment { id } } }", d=deployment_id
        )

    async def roll_back(self, deployment_id: str) -> None:
        await self.gql(
            'mutation($d: ID!) { rollbackDeployment(input: {deploymentId: $d, reason: "demo stopped"}) '
            "{ deployment { id } } }",
            d=deployment_id,
        )

    async def retire(self, deployment_id: str, *, within: float) -> None:
        """Destroy a deployment, rolling back first a rollout in flight (destroy refuses one), and wait until it is
        DESTROYED: its replicas are stopped and its name is free again."""
        deadline = time.monotonic() + within
        while True:
            self.services.check_alive()
            data = await self.gql("query($d: ID!) { deployment(id: $d) { lifecycle subStep } }", d=deployment_id)
            d = data["deployment"]
            if d is None or d["lifecycle"] == "DESTROYED":
                return
            with contextlib.suppress(DemoFailed):  # it moved on meanwhile: look again
                if d["lifecycle"] in ("PENDING", "READY"):
                    await self.destroy(deployment_id)
                elif d["lifecycle"] == "DEPLOYING" and d["subStep"] != "DEPLOYING_ROLLING_BACK":
                    await self.roll_back(deployment_id)
            if time.monotonic() > deadline:
                raise DemoFailed(f"deployment {deployment_id} was not destroyed within {within:.0f} s")
            await asyncio.sleep(0.2)

    async def clean_up(self, *, interrupted: bool) -> None:
        """Retire the demo deployment, so that the scheduler stops its replicas and the next run starts afresh.

        After a Ctrl-C the services are stopping too (the whole process group got it): then the next run retires it,
        and `Services.stop` takes care of the processes, replicas included, at once."""
        if interrupted or self.deployment_id is None or not self.services.alive("subgraph"):
            return
        with contextlib.suppress(Exception):  # best effort: whatever the subgraph answers, the processes stop next
            await self.retire(self.deployment_id, within=10)


EXPLORE = """
Explore further while it keeps running (Ctrl-C stops everything):
  GraphiQL:      open {api}/graphql in a browser
  A query:       curl -s {api}/graphql -H 'content-type: application/json' \\
                   -d '{{"query":"{{ deployments {{ edges {{ node {{ name lifecycle currentRevision {{ number }} }} }} }} }}"}}'
  History:       curl -s {api}/graphql -H 'content-type: application/json' \\
                   -d '{{"query":"{{ deployment(id: \\"{id}\\") {{ history {{ edges {{ node {{ phase message actor }} }} }} }} }}"}}'
  Traffic:       curl -s -X POST {proxy}/sentiment-demo/v1/predict
"""


async def show(demo: Demo, args: argparse.Namespace) -> int:
    """The narrated rollout, its summary, then (without --exit) serving until a signal or until a service exits."""
    seen = await demo.run()
    # The bad revision's own 500s are what the analysis caught; any other failure is the control plane's.
    bad = sum(n for answer, n in seen.items() if answer.startswith("failed") and answer.endswith("by revision 3"))
    failed = sum(n for answer, n in seen.items() if answer.startswith("failed")) - bad
    say("summary:")
    for answer, n in sorted(seen.items()):
        print(
            f"    {n:5d} requests answered by {answer}" if not answer.startswith("failed") else f"    {n:5d} {answer}"
        )
    print(f"    {bad} requests failed by the bad revision 3 itself before the analysis reverted it")
    print(f"    {sum(seen.values()) - failed - bad} passed, {failed} failed during the promotions")
    # While revision 4 was mirrored to, every caller must have had revision 2's answer, and nothing else.
    unseen = sum(n for answer, n in demo.shadowed.items() if answer != "revision 2")
    print(f"    {demo.shadowed['revision 2']} requests answered by revision 2 while revision 4 was mirrored to, "
          f"{unseen} otherwise")  # fmt: skip
    plane = demo.services.plane
    if plane is not None:  # the data plane's own count: the requests did go through HAProxy
        counted = plane.answers_counted(demo.sent_through_plane)
        print(f"    HAProxy answered {counted} requests for {DEPLOYMENT} (its exporter's count); the demo had "
              f"{demo.sent_through_plane} answers through it")  # fmt: skip
    if failed or unseen:
        return 1
    if not args.exit:
        print(EXPLORE.format(api=demo.services.api, proxy=demo.services.traffic, id=demo.deployment_id), flush=True)
        while True:  # a service stopped under the demo (killed, or the group's SIGINT) ends it too
            demo.services.check_alive()
            await asyncio.sleep(0.5)
    return 0


def cancel_on_signals(task: asyncio.Task[int]) -> list[int]:
    """SIGINT (a terminal's Ctrl-C) and SIGTERM cancel `task`; returns the list the signal received is put in.

    Handled by the event loop, whatever disposition this process inherited (a job started in the background by a
    shell ignores SIGINT): the services always stop on SIGINT, so the demo must too, or it would wait forever for
    services that are gone. Later signals change nothing: the clean-up runs to its end."""
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if not received:
            received.append(signum)
            task.cancel()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    return received


async def main_async(args: argparse.Namespace, settings: Settings, url: str) -> int:
    log_dir = os.path.join(str(settings.data_dir), "logs")
    os.makedirs(log_dir, exist_ok=True)
    proxy_port = free_port(args.proxy_port)
    services = Services(url, free_port(args.api_port), proxy_port, choose_dataplane(args.dataplane, proxy_port))
    demo = Demo(services)
    shown = asyncio.create_task(show(demo, args))
    received = cancel_on_signals(shown)
    services.start(log_dir)
    try:
        return await shown
    except (asyncio.CancelledError, DemoFailed) as exc:
        if received:
            return 128 + received[0]
        if isinstance(exc, asyncio.CancelledError):
            raise
        print(f"demo failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        try:
            with contextlib.suppress(OSError):  # a stdout gone (a pipe's reader exited) must not skip the clean-up
                say("cleaning up: destroying the demo deployment and stopping every process")
            await demo.clean_up(interrupted=bool(received))
        finally:
            services.stop()
            await demo.http.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description="A live blue-green rollout on one machine.")
    parser.add_argument("--exit", action="store_true", help="stop after the summary instead of waiting for Ctrl-C")
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--proxy-port", type=int, default=8080, help="the data plane's port")
    parser.add_argument(
        "--dataplane",
        choices=(BUILTIN, HAPROXY),
        default=os.environ.get("DATAPLANE") or BUILTIN,
        help="what carries the traffic: the built-in proxy, or HAProxy when installed (default: $DATAPLANE or builtin)",
    )
    args = parser.parse_args()
    if args.dataplane not in (BUILTIN, HAPROXY):  # a default from $DATAPLANE is not checked against `choices`
        parser.error(f"DATAPLANE must be {BUILTIN} or {HAPROXY}, not {args.dataplane!r}")
    cli.exit_cleanly_on_sigterm()  # until the event loop handles it (cancel_on_signals)
    try:
        settings = from_environment()
        url = cli.database_url(settings)  # this process owns the embedded server: it stops when the demo ends
        say(f"database schema at version {migrate(url)}")
        return asyncio.run(main_async(args, settings, url))
    except KeyboardInterrupt:  # before the event loop handles SIGINT: no service started yet
        return 130


if __name__ == "__main__":
    sys.exit(main())
