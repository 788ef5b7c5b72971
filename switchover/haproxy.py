"""`switchover haproxy`: keeps a running HAProxy's servers and weights equal to the database's routes (SPEC §7).

HAProxy 2.6 cannot create backends at run time, so the operator's configuration declares, per deployment, an empty
backend named prefix + name, and prefix + name + `.preview` for requests with `x-switchover-preview: 1` (a DNS label
has no dot, so no deployment's backend can be another's preview backend). This fills them through the runtime API (the
stats socket at `level admin`), never reloading HAProxy:

- one server per route with an endpoint, named after the route id, added with `add server` and made ready (HAProxy
  adds a dynamic server in maintenance);
- weights on HAProxy's 0–256 scale proportional to `trafficRatio` (`weight`): an ACTIVE route never 0, any other 0;
- a route that stops: its server goes into maintenance (no new requests; those in flight finish) and is deleted once
  HAProxy holds no connection to it (`del server` refuses before: tried again shortly);
- the preview backend holds the deploying revision's HEALTHY routes, at equal weights.

A sync reads the routes (one store query) and HAProxy's state (`show backend`, `show servers state`) and sends only
the commands that converge (`plan`, a pure function): a sync of a converged HAProxy sends none. A NOTIFY syncs the
deployments it names at once (a cost that does not grow with the fleet); everything is synced at start and every
`resync_seconds` (1 s: some scheduler steps change routes without a NOTIFY, and a HAProxy restarted underneath gets
its servers back). While the database cannot be read, HAProxy is kept at the last routes read. A command HAProxy
refuses is logged with its answer and sent again at the next sync. Only servers named like route ids (UUIDs) are
touched: whatever else an operator put in a backend is left alone.
"""

import asyncio
import contextlib
import functools
import ipaddress
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import asyncpg
from databases import Database

from store import notifications, replicas

log = logging.getLogger("switchover.haproxy")

MAX_WEIGHT = 256
PREVIEW_SUFFIX = ".preview"
# What HAProxy accepts in a proxy or server name (its `invalid_char`): letters, digits, '-', '_', '.', ':'.
IDENTIFIER = re.compile(r"[A-Za-z0-9_.:-]+")
# `srv_admin_state` bits (HAProxy's SRV_ADMF_*): forced, inherited, configured, resolution and hostname maintenance.
MAINTENANCE = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
FORCED = 0x01 | 0x08  # what `set server ... state ready` clears: forced maintenance and forced drain
# Answers of commands that worked; anything else is HAProxy refusing.
DONE = {"", "New server registered.", "Server deleted."}
STILL_CONNECTED = "still has connections"


class Unreachable(Exception):
    """HAProxy's runtime API did not answer."""


class RuntimeApi:
    """HAProxy's runtime API: one connection per command (HAProxy answers and closes it). `address` is a UNIX socket
    path (or `unix@PATH`) or `ipv4@HOST:PORT`, as in a `stats socket` line."""

    def __init__(self, address: str, *, timeout: float = 5.0) -> None:
        self.address = address
        self.timeout = timeout

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.address.startswith("ipv4@"):
            host, _, port = self.address.removeprefix("ipv4@").rpartition(":")
            return await asyncio.open_connection(host, int(port))
        return await asyncio.open_unix_connection(self.address.removeprefix("unix@"))

    async def ask(self, command: str) -> str:
        """HAProxy's answer to `command`, stripped. Commands are built from checked identifiers only: a ';' or a
        newline would let one value smuggle in another command."""
        if ";" in command or "\n" in command:
            raise ValueError(f"refusing to send a command with ';' or a newline: {command!r}")
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await self._open()
                try:
                    writer.write(command.encode() + b"\n")
                    await writer.drain()
                    answer = await reader.read()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except (OSError, TimeoutError, ValueError) as exc:
            raise Unreachable(f"{self.address}: {exc or type(exc).__name__}") from exc
        return answer.decode(errors="replace").strip()


async def check_runtime_api(api: RuntimeApi) -> str | None:
    """Why `api` cannot be used (a sentence), or None when it is HAProxy's runtime API at `level admin`."""
    try:
        info = await api.ask("show info")
    except Unreachable as exc:
        return f"cannot reach HAProxy's runtime API at {exc}"
    if not re.search(r"^Name: HAProxy$", info, re.MULTILINE):
        return f"{api.address} is not HAProxy's runtime API (it answered {info[:80]!r} to `show info`)"
    try:
        level = await api.ask("show cli level")
    except Unreachable as exc:
        return f"HAProxy's runtime API stopped answering: {exc}"
    if level != "admin":
        return f"{api.address} is at level {level!r}: give the stats socket `level admin` (it adds and deletes servers)"
    return None


# -- what HAProxy should hold --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    name: str  # the route id
    host: str  # an IP address
    port: int
    weight: int

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def weight(active: bool, ratio: float, largest: float) -> int:
    """A route's HAProxy weight: proportional to its ratio with the backend's largest at 256 (the finest steps the
    scale has), halves rounded up; an ACTIVE route at least 1 (it takes traffic), any other 0."""
    if not active:
        return 0
    if largest <= 0:
        return MAX_WEIGHT  # ACTIVE routes all at 0: they still take traffic, in equal shares
    return min(MAX_WEIGHT, max(1, int(MAX_WEIGHT * max(ratio, 0.0) / largest + 0.5)))


@functools.lru_cache(maxsize=65536)  # every sync asks again for every route: parse each endpoint once
def server_address(endpoint_url: str) -> tuple[str, int] | None:
    """(IP, port) of an `http://IP:PORT` endpoint; None for what a HAProxy server cannot be (another scheme, a path,
    a host name: HAProxy 2.6 resolves no name given to `add server`)."""
    try:
        parts = urlsplit(endpoint_url)
        port = parts.port or 80
        host = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return None
    if parts.scheme != "http" or parts.path not in ("", "/") or parts.query:
        return None
    return str(host), port


@dataclass
class Desired:
    backends: dict[str, dict[str, Server]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what cannot be served, for the log


def desired(servers: Iterable[replicas.BackendServer], prefix: str) -> Desired:
    """Each backend's servers with their weights, from the routes."""
    want = Desired()
    groups: dict[str, list[replicas.BackendServer]] = {}
    for server in servers:
        backend = prefix + server.deployment_name + (PREVIEW_SUFFIX if server.preview else "")
        if not IDENTIFIER.fullmatch(backend):
            want.problems.append(f"deployment {server.deployment_name!r} cannot be a HAProxy backend name")
            continue
        groups.setdefault(backend, []).append(server)
    for backend, members in groups.items():
        largest = max((s.traffic_ratio for s in members if s.active), default=0.0)
        servers_of = want.backends.setdefault(backend, {})
        for s in members:
            address = server_address(s.endpoint_url)
            if address is None:
                want.problems.append(f"route {s.route_id}: endpoint {s.endpoint_url!r} is not http://IP:PORT")
                continue
            servers_of[s.route_id] = Server(s.route_id, *address, weight(s.active, s.traffic_ratio, largest))
    return want


# -- what HAProxy holds --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    name: str
    host: str
    port: int
    weight: int
    admin_state: int


def parse_backends(answer: str) -> set[str]:
    """`show backend`: a `# name` line, then one name per line."""
    return {line.strip() for line in answer.splitlines() if line.strip() and not line.startswith("#")}


def parse_servers_state(answer: str) -> dict[str, dict[str, Observed]]:
    """`show servers state`: a format version, a `# be_id be_name ...` header naming the columns, a row per server."""
    columns: list[str] = []
    state: dict[str, dict[str, Observed]] = {}
    for line in answer.splitlines():
        if line.startswith("# "):
            columns = line[2:].split()
            continue
        fields = line.split()
        if not columns or len(fields) < len(columns):
            continue  # the version line, or something this version of the format does not have
        row = dict(zip(columns, fields, strict=False))
        state.setdefault(row["be_name"], {})[row["srv_name"]] = Observed(
            name=row["srv_name"],
            host=row["srv_addr"],
            port=int(row["srv_port"]),
            weight=int(row["srv_uweight"]),
            admin_state=int(row["srv_admin_state"]),
        )
    return state


def is_route_id(name: str) -> bool:
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False


# -- from one to the other -----------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Command sequences in three waves, each sent only after the one before: servers gaining weight (or added),
    servers losing it, servers leaving; so a promotion never has a moment without weight. The sequences of a wave
    are independent (sent side by side); within one, a refused command ends it."""

    waves: tuple[list[tuple[str, ...]], ...] = field(default_factory=lambda: ([], [], []))
    missing: list[str] = field(default_factory=list)  # backends to fill that HAProxy does not have

    @property
    def steps(self) -> list[tuple[str, ...]]:
        return [step for wave in self.waves for step in wave]

    @property
    def commands(self) -> list[str]:
        return [command for step in self.steps for command in step]


def _add(backend: str, server: Server) -> tuple[str, ...]:
    target = f"{backend}/{server.name}"
    return (f"add server {target} {server.address} weight {server.weight}", f"set server {target} state ready")


def _remove(backend: str, observed: Observed) -> tuple[str, ...]:
    target = f"{backend}/{observed.name}"
    maintenance = () if observed.admin_state & MAINTENANCE else (f"set server {target} state maint",)
    return (*maintenance, f"del server {target}")


def plan(want: dict[str, dict[str, Server]], backends: set[str], have: dict[str, dict[str, Observed]]) -> Plan:
    """The commands that make HAProxy (its `backends` and their servers `have`) hold the servers `want`."""
    rising: list[tuple[str, ...]] = []
    falling: list[tuple[str, ...]] = []
    leaving: list[tuple[str, ...]] = []
    missing = sorted(set(want) - backends)
    for backend in sorted(backends):
        servers = want.get(backend, {})
        present = {name: o for name, o in have.get(backend, {}).items() if is_route_id(name)}
        for name in sorted(set(servers) | set(present)):
            server, observed = servers.get(name), present.get(name)
            if observed is None:
                assert server is not None
                rising.append(_add(backend, server))
            elif server is None:
                leaving.append(_remove(backend, observed))
            elif (observed.host, observed.port) != (server.host, server.port):
                leaving.append(_remove(backend, observed) + _add(backend, server))  # a route's new endpoint
            else:
                step: tuple[str, ...] = ()
                if observed.weight != server.weight:
                    step += (f"set weight {backend}/{name} {server.weight}",)
                if observed.admin_state & FORCED:
                    step += (f"set server {backend}/{name} state ready",)
                if step:
                    (falling if server.weight < observed.weight else rising).append(step)
    return Plan((rising, falling, leaving), missing)


# -- one sync, and the process around it ---------------------------------------------------------------------------


@dataclass
class Synced:
    """What one sync did: the commands HAProxy accepted, those it refused (with its answer), and whether a server
    waits for its last connections to end before it can be deleted (a sync soon will try again)."""

    sent: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    waiting: bool = False
    complete: bool = False  # both the routes and HAProxy were read: HAProxy is in step now (commands refused aside)
    acknowledged: dict[str, float] = field(default_factory=dict)  # command → time.perf_counter() of HAProxy's answer


class Follower:
    """Keeps one HAProxy in step with the database; `sync` is one pass (what tests call directly)."""

    def __init__(self, db: Database, api: RuntimeApi, *, prefix: str = "") -> None:
        self.db = db
        self.api = api
        self.prefix = prefix
        self.routes: list[replicas.BackendServer] | None = None  # the last read: kept while the database is away
        self.said: set[str] = set()  # what was logged once and is not logged again while it stays true
        # Commands side by side, below HAProxy's default of 10 connections per stats socket (`stats maxconn`).
        self.connections = asyncio.Semaphore(4)

    def _once(self, key: str, message: str, *args: object, level: int = logging.WARNING) -> None:
        if key not in self.said:
            self.said.add(key)
            log.log(level, message, *args)

    def _over(self, key: str, message: str, *args: object) -> None:
        if key in self.said:
            self.said.discard(key)
            log.info(message, *args)

    async def read_routes(self, deployment_ids: list[str] | None) -> list[replicas.BackendServer] | None:
        """The servers of every backend, or of those named like `deployment_ids`; None when they cannot be read."""
        try:
            read = await replicas.haproxy_servers(self.db, deployment_ids)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self._once("database", "cannot read the routes (%s): HAProxy keeps the last ones read", exc)
            return None
        self._over("database", "the database answers again")
        return read

    async def read_haproxy(self, backends: list[str] | None) -> tuple[set[str], dict[str, dict[str, Observed]]] | None:
        """The backends HAProxy has (of `backends`, or all) and their servers; None when it does not answer."""
        commands = (
            ["show backend", "show servers state"]
            if backends is None
            else [f"show servers state {b}" for b in backends]
        )
        try:
            answers = await asyncio.gather(*(self._ask(command) for command in commands))
        except Unreachable as exc:
            self._once("haproxy", "HAProxy's runtime API does not answer (%s): trying again at the next sync", exc)
            return None
        self._over("haproxy", "HAProxy's runtime API answers again")
        if backends is None:
            return parse_backends(answers[0]), parse_servers_state(answers[1])
        found = [b for b, answer in zip(backends, answers, strict=True) if not answer.startswith("Can't find")]
        have: dict[str, dict[str, Observed]] = {}
        for answer in answers:
            have.update(parse_servers_state(answer))
        return set(found), have

    async def _ask(self, command: str) -> str:
        async with self.connections:
            return await self.api.ask(command)

    def _backends(self, names: Iterable[str]) -> list[str]:
        return [self.prefix + name + suffix for name in sorted(names) for suffix in ("", PREVIEW_SUFFIX)]

    async def sync(self, deployment_ids: Iterable[str] | None = None) -> Synced:
        """One pass over every backend, or (`deployment_ids`, what a NOTIFY names) over those deployments' only:
        then its cost does not grow with the number of deployments."""
        ids = sorted(set(deployment_ids)) if deployment_ids is not None and self.routes is not None else None
        names: set[str] | None = None
        if ids is not None:
            assert self.routes is not None
            known = {r.deployment_name for r in self.routes if r.deployment_id in ids}
            read, held = await asyncio.gather(self.read_routes(ids), self.read_haproxy(self._backends(known)))
            if read is None:
                return await self.sync()  # the database went away: a full pass over the last routes read
            names = known | {r.deployment_name for r in read}
            if names != known:  # a deployment's first servers
                held = await self.read_haproxy(self._backends(names))
            self.routes = [r for r in self.routes if r.deployment_name not in names] + read
        else:
            read, held = await asyncio.gather(self.read_routes(None), self.read_haproxy(None))
            if read is not None:
                self.routes = read
        done = Synced()
        if self.routes is None or held is None:
            return done  # routes never read: better leave HAProxy as it is than empty it
        want = desired(self.routes, self.prefix)
        for problem in want.problems:
            self._once(f"problem {problem}", "%s: not served through HAProxy", problem)
        backends_held, have = held
        done.complete = True
        if names is not None:  # the other backends were not read: leave them out of the plan
            mine = set(self._backends(names))
            steps = plan({b: s for b, s in want.backends.items() if b in mine}, backends_held, have)
        else:
            steps = plan(want.backends, backends_held, have)
        for backend in steps.missing:
            self._once(
                f"missing {backend}", "HAProxy has no backend %r: declare it in haproxy.cfg to serve it", backend
            )
        for backend in backends_held:
            self._over(f"missing {backend}", "HAProxy now has backend %r", backend)
        for wave in steps.waves:
            await asyncio.gather(*(self._send(step, done) for step in wave))
        return done

    async def _send(self, step: tuple[str, ...], done: Synced) -> None:
        for command in step:
            try:
                answer = await self._ask(command)
            except Unreachable as exc:
                answer = f"no answer: {exc}"
            if answer in DONE:
                done.sent.append(command)
                done.acknowledged[command] = time.perf_counter()
                self._over(f"refused {command}", "HAProxy accepted %r now", command)
                continue
            done.refused.append((command, answer))
            if STILL_CONNECTED in answer:
                done.waiting = True  # not a failure: the server drains, and goes at a later sync
                log.debug("%r: %s", command, answer)
            else:
                self._once(f"refused {command}", "HAProxy refused %r: %s (sent again next sync)", command, answer)
            return


class Listening(Protocol):
    """What `notifications.listen` returns, as far as this loop uses it."""

    def is_closed(self) -> bool: ...

    async def close(self) -> None: ...


async def _listen(url: str, announced: Callable[[str], None]) -> Listening | None:
    try:
        return await notifications.listen(url, announced)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        log.debug("cannot LISTEN (%s): syncing every second until the database is back", exc)
        return None


async def follow(
    follower: Follower,
    url: str,
    *,
    resync_seconds: float = 1.0,
    retry_seconds: float = 0.2,
    on_sync: Callable[[Synced], None] | None = None,
) -> None:
    """Sync the deployments a NOTIFY names as soon as it arrives, and everything every `resync_seconds` (every
    second while not listening, every `retry_seconds` while a deleted server drains); runs until cancelled."""
    wake = asyncio.Event()
    # Deployment ids announced since the last sync; "" (a LISTEN connection re-opened after an outage): anything.
    changed: set[str] = set()

    def announced(deployment_id: str) -> None:
        changed.add(deployment_id)
        wake.set()

    listener: Listening | None = None
    next_full = 0.0
    in_step = False
    try:
        while True:
            if listener is None or listener.is_closed():
                listener = await _listen(url, announced)
                next_full = 0.0  # changes may have been missed while not listening
                if listener is not None:
                    log.info("listening for changes")
            wake.clear()
            full = time.monotonic() >= next_full or not changed or "" in changed
            ids, changed = (None if full else set(changed)), set()
            synced = await follower.sync(ids)
            if full:
                next_full = time.monotonic() + (resync_seconds if listener is not None else 1.0)
                if synced.complete and not in_step:
                    in_step = True
                    log.info("HAProxy is in step with the routes (%d commands sent)", len(synced.sent))
            for command in synced.sent:
                log.info("haproxy: %s", command)
            if on_sync is not None:
                on_sync(synced)
            pause = retry_seconds if synced.waiting else max(0.0, next_full - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), pause)
    finally:
        if listener is not None and not listener.is_closed():
            await listener.close()


async def main(url: str, api: RuntimeApi, *, prefix: str, resync_seconds: float = 1.0) -> None:
    from store.database import open_database

    db = open_database(url, min_size=1, max_size=2)
    await db.connect()
    try:
        await follow(Follower(db, api, prefix=prefix), url, resync_seconds=resync_seconds)
    finally:
        await db.disconnect()
