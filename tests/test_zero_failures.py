"""Zero failed requests, shown under load (issue 18): ≥ 200 requests/s through each data plane, with real replica
processes, across a blue-green promotion and its revert, a rolling update, a canary's weight steps, and a replica
killed while another route of its revision is up."""

import asyncio
import importlib.util
import os
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import asyncpg
import pytest

from store import rollouts
from store.database import migrate, open_database
from store.models import CanaryStep, IntOrPercent
from tests.dataplanes import Load, Plane, builtin_proxy, load
from tests.private_postgres import PrivatePostgres
from tests.runtime_helpers import Machine
from tests.scenario import Scenario, blue_green, canary, rolling

OpenPlane = Callable[[str, list[str]], AbstractAsyncContextManager[Plane]]


def open_builtin(database_url: str, names: list[str]) -> AbstractAsyncContextManager[Plane]:
    return builtin_proxy(database_url)


def open_haproxy(database_url: str, names: list[str]) -> AbstractAsyncContextManager[Plane]:
    from tests.haproxy_helpers import haproxy_plane

    return haproxy_plane(database_url, names)


PLANES = [
    pytest.param(open_builtin, id="builtin"),
    pytest.param(
        open_haproxy,
        id="haproxy",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("tests.haproxy_helpers") is None, reason="no HAProxy data plane here"
        ),
    ),
]


@pytest.fixture(params=PLANES)
def open_plane(request: pytest.FixtureRequest) -> OpenPlane:
    return request.param  # type: ignore[no-any-return]


async def serving(scenario: Scenario, machine: Machine) -> str:
    """Revision 1 READY; the deployment's name."""
    await scenario.deploy()
    await machine.until_state("READY")
    return (await scenario.deployment()).name


def predict(plane: Plane, name: str) -> str:
    return f"{plane.url_for(name)}/v1/predict"


def no_failures(traffic: Load) -> None:
    assert traffic.failures == [], traffic.summary()
    assert traffic.achieved_rate >= 200, traffic.summary()


async def replica_pid(scenario: Scenario, revision: int) -> int:
    route = (await scenario.live_routes(revision=revision))[0]
    assert route.runtime_ref is not None and route.runtime_ref.startswith("pid:")
    return int(route.runtime_ref.removeprefix("pid:"))


async def test_a_blue_green_promotion_and_its_revert_under_load_fail_no_request(
    scenario: Scenario, machine: Machine, database_url: str, open_plane: OpenPlane
) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green(scale_down_delay_seconds=120))
    name = await serving(scenario, machine)
    async with open_plane(database_url, [name]) as plane, load(predict(plane, name)) as traffic:
        await traffic.until_answered(1, 100)
        await scenario.deploy()
        await machine.until_state("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
        await traffic.until_answered(1, 100)

        await rollouts.promote(scenario.db, scenario.id, actor="alice")
        await traffic.until_answered(2, 300)
        await rollouts.revert_promotion(scenario.db, scenario.id, actor="alice")
        await traffic.until_answered(1, 300)

    no_failures(traffic)


async def test_a_rolling_update_under_load_fails_no_request(
    scenario: Scenario, machine: Machine, database_url: str, open_plane: OpenPlane
) -> None:
    await scenario.given_deployment(replicas=2, strategy=rolling(IntOrPercent(count=1), IntOrPercent(count=0)))
    name = await serving(scenario, machine)
    async with open_plane(database_url, [name]) as plane, load(predict(plane, name)) as traffic:
        await traffic.until_answered(1, 100)
        await scenario.deploy()

        async def old_routes_gone() -> bool:
            return await scenario.live_routes(revision=1) == []

        await machine.until(old_routes_gone)  # stopped, while the load goes on
        await traffic.until_answered(2, 200)

    no_failures(traffic)


async def test_a_canary_stepping_its_weight_under_load_fails_no_request(
    scenario: Scenario, machine: Machine, database_url: str, open_plane: OpenPlane
) -> None:
    steps = [CanaryStep(set_weight=w) for w in (25, 50, 75, 100)]
    await scenario.given_deployment(replicas=2, strategy=canary(*steps, scale_down_delay_seconds=0))
    name = await serving(scenario, machine)
    async with open_plane(database_url, [name]) as plane, load(predict(plane, name)) as traffic:
        await traffic.until_answered(1, 100)
        await scenario.deploy()

        async def old_routes_gone() -> bool:
            return await scenario.live_routes(revision=1) == []

        await machine.until(old_routes_gone)
        await traffic.until_answered(2, 200)

    no_failures(traffic)
    assert traffic.answered[1] > 0 and traffic.answered[2] > 0


async def test_a_replica_killed_under_load_fails_no_request_while_its_revision_has_another_route(
    scenario: Scenario, machine: Machine, database_url: str, open_plane: OpenPlane
) -> None:
    await scenario.given_deployment(replicas=2)
    name = await serving(scenario, machine)
    victim = await replica_pid(scenario, 1)
    async with open_plane(database_url, [name]) as plane, load(predict(plane, name)) as traffic:
        await traffic.until_answered(1, 200)
        # Killed between two requests: one in flight at that instant was already sent and is lost whatever the
        # data plane does (it may not be sent twice); every later one must not be.
        await traffic.quiet()
        os.kill(victim, signal.SIGKILL)
        await traffic.until_answered(1, 1000)  # ~4 s: past the moment health checks would notice, never turned here

    no_failures(traffic)


# --- the data plane outlives its database ----------------------------------------------------------------------


def builtin_on_notify_only(database_url: str, names: list[str]) -> AbstractAsyncContextManager[Plane]:
    return builtin_proxy(database_url, env={"SWITCHOVER_PROXY_REFRESH_SECONDS": "3600"})


def haproxy_on_notify_only(database_url: str, names: list[str]) -> AbstractAsyncContextManager[Plane]:
    from tests.haproxy_helpers import haproxy_plane

    return haproxy_plane(database_url, names, resync_seconds=3600)


async def until_logged(plane: Plane, text: str, *, within: float = 15) -> None:
    log = plane.log
    deadline = time.monotonic() + within
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} not logged: {log.read_text(errors='replace')[-2000:]}"
        await asyncio.sleep(0.05)


async def committed(step: Callable[[], Awaitable[object]], *, within: float = 15) -> None:
    """Run a store function once the database answers again (the pool's connections died with the server)."""
    deadline = time.monotonic() + within
    while True:
        try:
            await step()
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


async def redispatched(plane: Plane, name: str) -> int | None:
    """How many requests HAProxy moved to another server after their connection failed (its backend's `wredis`);
    None for the built-in proxy, which counts no such thing."""
    from tests.haproxy_helpers import Plane as HaproxyPlane

    if not isinstance(plane, HaproxyPlane):
        return None
    return int((await plane.haproxy.stats(name))["BACKEND"]["wredis"])


# No periodic re-read on either plane: only NOTIFY can bring the change made after the outage within a second.
NOTIFY_ONLY = [
    pytest.param(builtin_on_notify_only, id="builtin"),
    pytest.param(haproxy_on_notify_only, id="haproxy", marks=PLANES[1].marks),
]


@pytest.mark.parametrize("open_plane", NOTIFY_ONLY)
async def test_the_data_plane_serves_through_a_database_outage_and_follows_a_change_by_notify_once_it_is_back(
    open_plane: OpenPlane,
) -> None:
    pg = await asyncio.to_thread(PrivatePostgres)
    try:
        await asyncio.to_thread(pg.start)
        await asyncio.to_thread(migrate, pg.url)
        db = open_database(pg.url, max_size=10)
        await db.connect()
        scenario = Scenario(db)
        machine = Machine(scenario)
        try:
            await scenario.given_deployment(replicas=2, strategy=blue_green())
            name = await serving(scenario, machine)
            await scenario.deploy()
            await machine.until_state("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
            victim = await replica_pid(scenario, 1)
            async with open_plane(pg.url, [name]) as plane, load(predict(plane, name)) as traffic:
                await traffic.until_answered(1, 200)
                await asyncio.to_thread(pg.stop)
                outage = time.monotonic()
                await traffic.until_answered(1, 1000)
                await traffic.quiet()
                os.kill(victim, signal.SIGKILL)  # in the middle of the outage: nobody can mark it unhealthy
                while time.monotonic() - outage < 10:
                    await traffic.until_answered(1, 100)
                # HAProxy still picked the dead server (nobody could mark it down) and sent those requests elsewhere
                assert await redispatched(plane, name) != 0
                await asyncio.to_thread(pg.start)
                await until_logged(plane, "LISTEN connection re-established")

                await committed(lambda: rollouts.promote(db, scenario.id, actor="alice"))
                promoted = time.monotonic()
                await traffic.until_answered(2, 1, within=5)
                followed = time.monotonic() - promoted
                await traffic.until_answered(2, 200)

            no_failures(traffic)
            assert followed < 1.0, f"the promotion reached the data plane {followed:.2f} s after its commit"
        finally:
            machine.runtime.stop_all_started_here()
            await machine.checker.aclose()
            await db.disconnect()
    finally:
        await asyncio.to_thread(pg.destroy)
