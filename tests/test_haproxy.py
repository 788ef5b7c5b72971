"""`switchover haproxy` against a real HAProxy (Debian's 2.6) and real replica processes: servers and weights follow
the routes through the runtime API, a promotion moves the traffic, stopped routes leave, a restarted HAProxy is
restored, a converged one gets no command; and the pure parts (weights, the plan) as tables."""

import asyncio
import contextlib
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from store import rollouts
from store.database import open_database
from switchover.haproxy import (
    Follower,
    Observed,
    RuntimeApi,
    Server,
    follow,
    parse_servers_state,
    plan,
    weight,
)
from tests.haproxy_helpers import HAPROXY, Haproxy, config, ensure_haproxy, haproxy_plane, running_haproxy
from tests.prometheus_helpers import free_port
from tests.runtime_helpers import Machine
from tests.scenario import Scenario, blue_green

BLUE, GREEN = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"

# -- pure: weights and the plan ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("active", "ratio", "largest", "expected"),
    [
        (True, 0.5, 0.5, 256),  # the largest share of a backend is always 256
        (True, 1 / 3, 2 / 3, 128),  # proportional
        (True, 0.1, 0.225, 114),  # a canary's 10 % beside four routes at 22.5 %: 113.8 rounds to 114
        (True, 2.5, 256, 3),  # a half rounds up
        (True, 0.001, 1.0, 1),  # an ACTIVE route never gets 0 (0.256 would round to 0)
        (True, 0.0, 0.5, 1),
        (True, 0.0, 0.0, 256),  # every ACTIVE route at ratio 0: still taking traffic, in equal shares
        (False, 1.0, 1.0, 0),  # INACTIVE: always 0, whatever its ratio
        (False, 0.0, 0.0, 0),
    ],
)
def test_weights_are_proportional_to_the_ratio_on_haproxys_scale(
    active: bool, ratio: float, largest: float, expected: int
) -> None:
    assert weight(active, ratio, largest) == expected


STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 m 1 11111111-1111-1111-1111-111111111111 127.0.0.1 2 0 256 256 0 1 0 0 0 0 0 0 - 9001 - 0 0 - - 0
3 m 2 22222222-2222-2222-2222-222222222222 127.0.0.1 0 1 0 0 0 1 0 0 0 0 0 0 - 9002 - 0 0 - - 0
"""  # noqa: E501 (HAProxy's own header line)


def test_show_servers_state_is_read_by_its_header() -> None:
    assert parse_servers_state(STATE) == {
        "m": {
            BLUE: Observed(BLUE, "127.0.0.1", 9001, 256, 0),
            GREEN: Observed(GREEN, "127.0.0.1", 9002, 0, 1),
        }
    }


def test_a_promotion_raises_green_before_it_lowers_blue_and_a_converged_haproxy_gets_nothing() -> None:
    have = {"m": {BLUE: Observed(BLUE, "127.0.0.1", 9001, 256, 0), GREEN: Observed(GREEN, "127.0.0.1", 9002, 0, 0)}}
    want = {"m": {BLUE: Server(BLUE, "127.0.0.1", 9001, 0), GREEN: Server(GREEN, "127.0.0.1", 9002, 256)}}
    assert plan(want, {"m"}, have).commands == [f"set weight m/{GREEN} 256", f"set weight m/{BLUE} 0"]
    converged = {
        "m": {BLUE: Observed(BLUE, "127.0.0.1", 9001, 0, 0), GREEN: Observed(GREEN, "127.0.0.1", 9002, 256, 0)}
    }
    assert plan(want, {"m"}, converged).commands == []


def test_servers_are_added_ready_and_removed_through_maintenance() -> None:
    have = {
        "m": {
            BLUE: Observed(BLUE, "127.0.0.1", 9001, 0, 0),
            "static-one": Observed("static-one", "10.0.0.1", 80, 1, 0),  # the operator's own: left alone
        },
        "gone": {GREEN: Observed(GREEN, "127.0.0.1", 9002, 0, 1)},  # already in maintenance: deleted at once
    }
    want = {"m": {GREEN: Server(GREEN, "::1", 9003, 7)}, "nobody": {BLUE: Server(BLUE, "127.0.0.1", 1, 1)}}
    planned = plan(want, {"m", "gone"}, have)
    assert planned.steps == [
        (f"add server m/{GREEN} [::1]:9003 weight 7", f"set server m/{GREEN} state ready"),
        (f"del server gone/{GREEN}",),
        (f"set server m/{BLUE} state maint", f"del server m/{BLUE}"),
    ]
    assert planned.missing == ["nobody"]


def test_a_server_in_maintenance_or_drained_by_hand_is_made_ready_and_a_moved_endpoint_is_replaced() -> None:
    have = {"m": {BLUE: Observed(BLUE, "127.0.0.1", 9001, 256, 8), GREEN: Observed(GREEN, "127.0.0.1", 9002, 5, 0)}}
    want = {"m": {BLUE: Server(BLUE, "127.0.0.1", 9001, 256), GREEN: Server(GREEN, "127.0.0.1", 9009, 5)}}
    assert plan(want, {"m"}, have).steps == [
        (f"set server m/{BLUE} state ready",),
        (
            f"set server m/{GREEN} state maint",
            f"del server m/{GREEN}",
            f"add server m/{GREEN} 127.0.0.1:9009 weight 5",
            f"set server m/{GREEN} state ready",
        ),
    ]


# -- a real HAProxy ------------------------------------------------------------------------------------------------


async def servers(api: RuntimeApi, backend: str) -> dict[str, int]:
    """Route id → weight of the servers HAProxy has in `backend`, the ones in maintenance left out."""
    state = parse_servers_state(await api.ask(f"show servers state {backend}")).get(backend, {})
    return {name: o.weight for name, o in state.items() if not o.admin_state & 0x01}


async def revisions_answering(url: str, count: int, headers: dict[str, str] | None = None) -> Counter[int | str]:
    seen: Counter[int | str] = Counter()
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(count):
            response = await client.post(f"{url}/v1/predict", content=b"hello", headers=headers)
            seen[response.json()["revision"] if response.status_code == 200 else f"HTTP {response.status_code}"] += 1
    return seen


async def route_ids(scenario: Scenario, revision: int) -> set[str]:
    return {r.id for r in await scenario.live_routes(revision=revision)}


async def until(condition: Callable[[], Awaitable[bool]], *, within: float = 20, turn: Machine | None = None) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"not reached in {within} s"
        if turn is not None:
            await turn.turn()
        await asyncio.sleep(0.05)


@pytest.fixture
async def deployment(scenario: Scenario) -> str:
    await scenario.given_deployment(replicas=2, strategy=blue_green(scale_down_delay_seconds=1))
    return (await scenario.deployment()).name


@pytest.fixture
async def haproxy(deployment: str) -> AsyncIterator[Haproxy]:
    async with running_haproxy([deployment]) as h:
        yield h


async def test_servers_follow_a_blue_green_rollout_from_deploy_to_the_old_routes_stopping(
    scenario: Scenario, machine: Machine, deployment: str, haproxy: Haproxy
) -> None:
    follower = Follower(scenario.db, haproxy.api)
    url = f"{haproxy.url}/{deployment}"
    preview = {"x-switchover-preview": "1"}

    # Given revision 1 serving on two routes at ratio 0.5 each
    await scenario.deploy()
    await machine.until_state("READY")
    first = await follower.sync()
    blue = await route_ids(scenario, 1)
    # Then HAProxy has a server per route, at the top weight, ready, and requests reach revision 1
    assert len(first.sent) == 4 and not first.refused, first
    assert await servers(haproxy.api, deployment) == dict.fromkeys(blue, 256)
    assert await revisions_answering(url, 10) == Counter({1: 10})
    # And a second sync of a converged HAProxy sends nothing
    assert (await follower.sync()).sent == []

    # When revision 2 is deployed and waits for promotion
    await scenario.deploy()
    await machine.until_state("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
    await follower.sync()
    green = await route_ids(scenario, 2)
    # Then green is in the backend at weight 0, and alone in the preview backend
    assert await servers(haproxy.api, deployment) == {**dict.fromkeys(blue, 256), **dict.fromkeys(green, 0)}
    assert await servers(haproxy.api, f"{deployment}.preview") == dict.fromkeys(green, 256)
    assert await revisions_answering(url, 10) == Counter({1: 10})
    assert await revisions_answering(url, 10, preview) == Counter({2: 10})

    # When it is promoted
    await rollouts.promote(scenario.db, scenario.id, actor="alice")
    promoted = await follower.sync()
    # Then green is raised before blue is lowered, and requests reach green
    assert {c.split("/")[1] for c in promoted.sent[:2]} == {f"{g} 256" for g in green}
    assert {c.split("/")[1] for c in promoted.sent[2:4]} == {f"{b} 0" for b in blue}
    assert all(c.startswith("set weight") for c in promoted.sent[:4]), promoted
    # (the preview backend empties: maintenance, then deletion of each green server there)
    assert sorted(c.split()[0] for c in promoted.sent[4:]) == ["del", "del", "set", "set"], promoted
    assert await servers(haproxy.api, deployment) == {**dict.fromkeys(blue, 0), **dict.fromkeys(green, 256)}
    assert await servers(haproxy.api, f"{deployment}.preview") == {}
    assert await revisions_answering(url, 10) == Counter({2: 10})

    # When the blue routes stop after the scale-down delay
    async def blue_removed() -> bool:
        await follower.sync()
        return set(parse_servers_state(await haproxy.api.ask(f"show servers state {deployment}"))[deployment]) == green

    await until(blue_removed, turn=machine)
    # Then their servers are gone and green keeps serving
    assert await revisions_answering(url, 10) == Counter({2: 10})


async def test_a_haproxy_restarted_underneath_is_restored_and_a_promotion_arrives_by_notify(
    scenario: Scenario, machine: Machine, deployment: str, database_url: str
) -> None:
    await scenario.deploy()
    await machine.until_state("READY")
    async with haproxy_plane(database_url, [deployment], resync_seconds=1.0) as plane:
        await until(lambda: serving_in(plane.url_for(deployment), 1))
        # When HAProxy is restarted with its configuration only (no servers)
        await plane.haproxy.restart()
        assert await servers(plane.haproxy.api, deployment) == {}
        # Then the next periodic sync gives them back
        await until(lambda: serving_in(plane.url_for(deployment), 1), within=10)
    # A follower that re-syncs only every minute still follows a promotion at once: NOTIFY wakes it
    await scenario.deploy()
    await machine.until_state("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
    async with haproxy_plane(database_url, [deployment], resync_seconds=60) as plane:
        await until(lambda: serving_in(plane.url_for(deployment), 1))
        await rollouts.promote(scenario.db, scenario.id, actor="alice")
        started = time.monotonic()
        await until(lambda: serving_in(plane.url_for(deployment), 2), within=5)
        assert time.monotonic() - started < 5


async def serving_in(url: str, revision: int) -> bool:
    return await revisions_answering(url, 4) == Counter({revision: 4})


async def test_a_missing_backend_is_logged_once_and_a_refused_command_is_logged_with_it_and_retried(
    scenario: Scenario, machine: Machine, deployment: str, caplog: pytest.LogCaptureFixture
) -> None:
    await scenario.deploy()
    await machine.until_state("READY")
    caplog.set_level(logging.INFO, logger="switchover.haproxy")
    # HAProxy refuses dynamic servers in a backend whose algorithm cannot take them (static-rr)
    async with running_haproxy([deployment], balance="static-rr") as refusing:
        follower = Follower(scenario.db, refusing.api, prefix="")
        first, second = await follower.sync(), await follower.sync()
    # Commands of one wave go side by side: answers (and refusals) come back in any order
    assert first.refused and sorted(c for c, _ in first.refused) == sorted(c for c, _ in second.refused)
    command, answer = first.refused[0]
    assert command.startswith(f"add server {deployment}/")
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any(command in m and answer in m for m in refusals), refusals

    caplog.clear()
    async with running_haproxy(["someone-else"]) as other:
        follower = Follower(scenario.db, other.api)
        for _ in range(3):
            assert (await follower.sync()).sent == []
    missing = [r.getMessage() for r in caplog.records if "no backend" in r.getMessage()]
    assert missing == [f"HAProxy has no backend {deployment!r}: declare it in haproxy.cfg to serve it"]


async def cli(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchover", "haproxy", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_a_socket_that_is_not_haproxys_runtime_api_is_a_clear_error_with_exit_code_2() -> None:
    directory = Path(tempfile.mkdtemp(prefix="not-haproxy-"))  # short: a UNIX socket path fits in 108 bytes

    async def chatter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        writer.close()

    server = await asyncio.start_unix_server(chatter, path=str(directory / "other.sock"))
    try:
        missing = await cli("--socket", str(directory / "nothing.sock"))
        other = await cli("--socket", str(directory / "other.sock"))
        bad_prefix = await cli("--socket", str(directory / "other.sock"), "--backend-prefix", "a b")
    finally:
        server.close()
        await server.wait_closed()
        shutil.rmtree(directory, ignore_errors=True)
    assert missing[0] == 2 and "cannot reach HAProxy's runtime API" in missing[1], missing
    assert "No such file" in missing[1]
    assert other[0] == 2 and "is not HAProxy's runtime API" in other[1], other
    assert bad_prefix[0] == 2 and "--backend-prefix" in bad_prefix[1], bad_prefix


async def test_a_runtime_api_below_level_admin_is_refused_at_start_with_exit_code_2() -> None:
    async with running_haproxy(["sentiment"], level="operator") as haproxy:
        code, err = await cli("--socket", str(haproxy.socket))
    assert code == 2 and "level 'operator'" in err and "level admin" in err, err


def test_the_readmes_haproxy_cfg_is_valid_and_is_what_the_tests_run(tmp_path: Path) -> None:
    ensure_haproxy()
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (block,) = re.findall(r"```haproxy\n(.*?)```", readme, re.S)
    (tmp_path / "haproxy.cfg").write_text(block)
    checked = subprocess.run(
        [str(HAPROXY), "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    def served(text: str) -> list[str]:
        """The routing, and the timeouts and retries the zero-failure tests rely on (a dead server's requests are
        redispatched)."""
        kept = ("http-request set", "use_", "timeout", "retries", "option")
        return [line.strip() for line in text.splitlines() if line.strip().startswith(kept)]

    assert served(block) == served(config(tmp_path / "s", 1, ["sentiment"]))
    assert "sentiment.preview" in block


class Relay:
    """A TCP relay to PostgreSQL that can be cut: for the follower, the database goes away and comes back, while
    the machine's PostgreSQL (which the test itself and other tests use) stays up."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()


async def test_while_the_database_is_away_haproxy_keeps_the_last_routes_and_follows_again_when_it_returns(
    scenario: Scenario,
    machine: Machine,
    deployment: str,
    haproxy: Haproxy,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="switchover.haproxy")
    await scenario.deploy()
    await machine.until_state("READY")
    parts = urlsplit(database_url)
    relay = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
    await relay.start()
    relayed = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{relay.port}"))
    db = open_database(relayed, max_size=2)
    await db.connect()
    follower = Follower(db, haproxy.api)
    task = asyncio.create_task(follow(follower, relayed, resync_seconds=0.3))
    url = f"{haproxy.url}/{deployment}"
    try:
        await until(lambda: serving_in(url, 1))
        # When the database goes away, and HAProxy restarts meanwhile
        await relay.cut()
        await haproxy.restart()
        # Then the follower gives it back the last routes it read, and keeps going
        await until(lambda: serving_in(url, 1), within=10)
        assert any("cannot read the routes" in r.getMessage() for r in caplog.records)
        # When revision 2 is promoted while the follower cannot see it
        await scenario.deploy()
        await machine.until_state("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
        await rollouts.promote(scenario.db, scenario.id, actor="alice")
        assert await serving_in(url, 1)
        # Then it follows as soon as the database is back
        await relay.start()
        await until(lambda: serving_in(url, 2), within=10)
        assert not task.done()
        assert any("the database answers again" in r.getMessage() for r in caplog.records)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.disconnect()
        await relay.cut()


async def test_a_sync_for_the_deployments_a_notify_names_touches_only_their_backends_and_a_full_one_repairs_drift(
    scenario: Scenario, machine: Machine, deployment: str
) -> None:
    await scenario.deploy()
    await machine.until_state("READY")
    first_id = scenario.id
    other = Scenario(scenario.db)
    await other.given_deployment(replicas=1, strategy=blue_green())
    other_name = (await other.deployment()).name
    await other.deploy()

    async def other_ready() -> bool:
        return await other.state() == "READY"

    await machine.until(other_ready)  # the machine runs every deployment's routes
    async with running_haproxy([deployment, other_name]) as haproxy:
        follower = Follower(scenario.db, haproxy.api)
        await follower.sync()
        (other_route,) = await route_ids(other, 1)
        # Someone changes the other deployment's server by hand
        assert await haproxy.api.ask(f"set weight {other_name}/{other_route} 7") == ""
        # Then a sync for the first deployment alone (what its NOTIFY asks for) leaves the other one as it is
        assert (await follower.sync([first_id])).sent == []
        assert (await servers(haproxy.api, other_name)) == {other_route: 7}
        # Then the periodic full sync puts the drifted weight back
        repaired = await follower.sync()
        assert repaired.sent == [f"set weight {other_name}/{other_route} 256"]


async def sessions(api: RuntimeApi, backend: str, server: str) -> int:
    """Current sessions of one server (`show stat`: CSV, `scur` in the fifth column)."""
    for line in (await api.ask("show stat")).splitlines():
        fields = line.split(",")
        if fields[:2] == [backend, server]:
            return int(fields[4] or 0)
    return 0


async def test_a_stopping_route_drains_its_request_in_flight_before_its_server_is_deleted(
    scenario: Scenario, machine: Machine
) -> None:
    await scenario.given_deployment(replicas=1, strategy=blue_green(scale_down_delay_seconds=0))
    name = (await scenario.deployment()).name
    await scenario.deploy(await scenario.add_revision(env={"REPLICA_ANSWER_DELAY_SECONDS": "3"}))
    await machine.until_state("READY")
    await scenario.deploy()
    await machine.until_state("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
    (blue,) = await route_ids(scenario, 1)
    async with running_haproxy([name]) as haproxy:
        follower = Follower(scenario.db, haproxy.api)
        await follower.sync()
        # Given a slow request in flight on blue
        async with httpx.AsyncClient(timeout=20) as client:
            slow = asyncio.create_task(client.post(f"{haproxy.url}/{name}/v1/predict", content=b"slow"))

            async def in_flight() -> bool:
                return await sessions(haproxy.api, name, blue) == 1

            await until(in_flight)
            # When blue is promoted away and stops (the scheduler alone: its process is left running)
            await rollouts.promote(scenario.db, scenario.id, actor="alice")
            await follower.sync()

            async def blue_stopping() -> bool:
                await scenario.tick()
                return blue not in await route_ids(scenario, 1)

            await until(blue_stopping)
            draining = await follower.sync()
            # Then its server goes into maintenance but is not deleted under the request
            assert draining.waiting and draining.sent == [f"set server {name}/{blue} state maint"], draining
            assert draining.refused == [(f"del server {name}/{blue}", draining.refused[0][1])]
            assert "still has connections" in draining.refused[0][1]
            answer = await slow
        assert answer.status_code == 200 and answer.json()["revision"] == 1

        # And it is deleted once the request is over
        async def deleted() -> bool:
            return blue not in parse_servers_state(await haproxy.api.ask(f"show servers state {name}")).get(name, {})

        async def deleted_after_sync() -> bool:
            await follower.sync()
            return await deleted()

        await until(deleted_after_sync, within=15)
