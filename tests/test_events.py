"""History as a stream of events (store/events.py): every row once, again only when its content changed."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

from store import events, route_health
from store.models import RouteStatus
from tests.scenario import Scenario, blue_green

Version = tuple[str, int, str]  # id, attempts, message


class Subscriber:
    """Reads `events.events` in a task of its own, as the subscription does, recording each event it gets."""

    def __init__(self, db: Any, url: str, deployment_id: str) -> None:
        self.got: list[Version] = []
        self.task = asyncio.create_task(self._read(db, url, deployment_id))

    async def _read(self, db: Any, url: str, deployment_id: str) -> None:
        async for event in events.events(db, url, deployment_id=deployment_id, project_ids=None, after_seq=0):
            self.got.append((event.id, event.history.attempts, event.history.message))

    async def until(self, done: Callable[[set[Version]], bool], within: float = 30) -> list[Version]:
        deadline = time.monotonic() + within
        while not done(set(self.got)):
            assert not self.task.done(), self.task.exception()
            assert time.monotonic() < deadline, f"events so far: {self.got}"
            await asyncio.sleep(0.02)
        return self.got

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def history_versions(scenario: Scenario) -> set[Version]:
    rows = await scenario.db.fetch_all(
        "SELECT id::text, attempts, message FROM deployment_history WHERE deployment_id = :d", {"d": scenario.id}
    )
    return {(r["id"], r["attempts"], r["message"]) for r in rows}


async def test_concurrent_writers_and_late_subscribers_see_every_row_exactly_once(
    scenario: Scenario, db: Any, database_url: str
) -> None:
    await scenario.given_deployment(replicas=3)
    await scenario.ready_on_first_revision()
    routes = [r.id for r in await scenario.routes()]
    subscribers = [Subscriber(db, database_url, scenario.id)]

    async def flap(route_id: str) -> None:
        # Three clients report their route DEGRADED then HEALTHY in a loop: a history row per change.
        for i in range(40):
            status = RouteStatus.DEGRADED if i % 2 == 0 else RouteStatus.HEALTHY
            await route_health.report_route_health(db, route_id, status, actor=f"client-{routes.index(route_id)}")
            if i in (7, 23) and route_id == routes[0]:  # subscriptions started while rows are being written
                subscribers.append(Subscriber(db, database_url, scenario.id))

    try:
        await asyncio.gather(*(flap(r) for r in routes))
        # Two more rows, each awaited: a row read only on its own notification comes after every notification
        # queued before it, so a late duplicate of an earlier row would be among what the subscribers got.
        for status in (RouteStatus.DEGRADED, RouteStatus.HEALTHY):
            await route_health.report_route_health(db, routes[0], status, actor="last-writer")
            written = await history_versions(scenario)
            for subscriber in subscribers:
                await subscriber.until(written.issubset)
        for subscriber in subscribers:
            got = subscriber.got
            assert len(got) == len(set(got)), [v for v in got if got.count(v) > 1][:5]  # no row twice
            assert set(got) == written
    finally:
        for subscriber in subscribers:
            await subscriber.stop()
    assert len(subscribers) == 3 and len(written) > 100


async def test_a_retried_row_is_sent_again_only_when_its_attempts_changed(
    scenario: Scenario, db: Any, database_url: str
) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green(max_retries=5))
    await scenario.ready_on_first_revision()
    subscriber = Subscriber(db, database_url, scenario.id)
    try:
        await scenario.deploy()
        await scenario.tick()
        for _ in range(3):  # a green route fails to start, is replaced: one row, its attempts counted up
            await scenario.report(RouteStatus.FAILED_TO_START, revision=2, count=1)
            await scenario.tick()
            written = await history_versions(scenario)
            got = await subscriber.until(written.issubset)  # every version, seen before the next write
    finally:
        await subscriber.stop()

    [retried] = [id_ for id_, attempts, _ in written if attempts == 3]
    assert [attempts for id_, attempts, _ in got if id_ == retried] == [1, 2, 3], got  # each version once, in order
    assert len(got) == len(set(got)), got
