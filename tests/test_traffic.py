"""What the proxy counts per revision: its /metrics, the aggregates it flushes to PostgreSQL (summed over proxies),
the BUILTIN provider reading them, and flushes that fail without losing or doubling a request.

Real replica processes behind real `switchover proxy` apps; waiting is polling with a deadline.
"""

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from databases import Database
from prometheus_client.parser import text_string_to_metric_families

from scheduler.process_runtime import replica_alive
from scheduler.providers import Reading, Target, builtin
from store import rollouts, traffic
from store.database import open_database
from store.replicas import Destination
from switchover.proxy import create_proxy
from switchover.replica import fails
from switchover.traffic_counts import TrafficCounts
from tests.live_server import serving
from tests.runtime_helpers import Machine
from tests.scenario import Scenario, blue_green

# Test-only SQL: a COMMIT that PostgreSQL refuses (a deferred constraint trigger runs at COMMIT), rows moved back in
# time, the proxies that wrote rows, and the id of a transaction.
REFUSE_COMMITS = [
    """CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql
       AS $$ BEGIN RAISE EXCEPTION 'the test refuses this commit'; END $$""",
    """CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT OR UPDATE ON proxy_traffic
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()""",
]
ACCEPT_COMMITS = "DROP TRIGGER refuse_at_commit ON proxy_traffic"
AGE_ROWS = "UPDATE proxy_traffic SET interval_start = interval_start - make_interval(secs => :seconds)"
PROXIES_OF = "SELECT DISTINCT proxy_id FROM proxy_traffic WHERE revision_id = :revision_id"
TRANSACTION_ID = "SELECT CAST(pg_current_xact_id() AS text)"

Sample = tuple[str, frozenset[tuple[str, str]]]


@asynccontextmanager
async def proxy(
    database_url: str, *, db: Database | None = None, flush_seconds: float = 3600
) -> AsyncIterator[tuple[str, TrafficCounts]]:
    """A `switchover proxy` served on a free port, and what it counts. Its counts flush every `flush_seconds` (by
    default only when it stops) into `db` (by default a pool of its own on `database_url`)."""
    app = create_proxy(db or open_database(database_url), database_url, flush_seconds=flush_seconds)
    async with serving(app, lifespan="on") as base:
        yield base, app.state.counts


async def send(client: httpx.AsyncClient, base: str, name: str, count: int) -> Counter[tuple[int, int]]:
    """`count` POSTs through a proxy: how many got each (revision, status)."""
    seen: Counter[tuple[int, int]] = Counter()
    for _ in range(count):
        answer = await client.post(f"{base}/{name}/v1/predict", content=b"hello")
        seen[answer.json().get("revision", 0), answer.status_code] += 1
    return seen


async def scrape(client: httpx.AsyncClient, base: str) -> dict[Sample, float]:
    text = (await client.get(f"{base}/metrics")).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def requests_total(deployment: str, revision: int, code: int) -> Sample:
    labels = {"deployment": deployment, "revision": str(revision), "code": str(code)}
    return "switchover_proxy_requests_total", frozenset(labels.items())


def durations_count(deployment: str, revision: int) -> Sample:
    labels = {"deployment": deployment, "revision": str(revision)}
    return "switchover_proxy_request_duration_seconds_count", frozenset(labels.items())


async def eventually(condition: Callable[[], Awaitable[bool]], *, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"not reached in {within} s"
        await asyncio.sleep(0.05)


async def figures(scenario: Scenario, revision: int, *, seconds: int = 300) -> traffic.Figures:
    return await traffic.revision_figures(scenario.db, scenario.id, scenario.revisions[revision - 1], seconds=seconds)


async def target(scenario: Scenario, revision: int, *, seconds: int = 300) -> Target:
    return Target(
        deployment_id=scenario.id,
        deployment_name=(await scenario.deployment()).name,
        project_id=scenario.project_id,
        revision_id=scenario.revisions[revision - 1],
        revision_number=revision,
        interval_seconds=seconds,
    )


def destination(scenario: Scenario, revision: int) -> Destination:
    """A route of the revision as the proxy's table holds it, for counting without traffic."""
    return Destination(
        route_id="route",
        endpoint_url="http://127.0.0.1:9",
        traffic_ratio=1.0,
        deployment_id=scenario.id,
        revision_id=scenario.revisions[revision - 1],
        revision_number=revision,
    )


async def serving_revision(
    client: httpx.AsyncClient, base: str, name: str, revision: int, seen: Counter[tuple[int, int]]
) -> None:
    """Send requests (added to `seen`) until the proxy has followed a switch to `revision`."""

    async def followed() -> bool:
        seen.update(await send(client, base, name, 1))
        return any(r == revision for r, _ in seen)

    await eventually(followed)


async def test_two_proxies_export_per_revision_metrics_and_their_stored_counts_add_up(
    scenario: Scenario, machine: Machine, database_url: str
) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green(scale_down_delay_seconds=60))
    name = (await scenario.deployment()).name
    await scenario.deploy()
    await machine.until_state("READY")

    async with (
        proxy(database_url, flush_seconds=0.5) as (a, counts_a),
        proxy(database_url, flush_seconds=0.5) as (b, counts_b),
        httpx.AsyncClient(timeout=10) as client,
    ):
        through_a = await send(client, a, name, 30)
        through_b = await send(client, b, name, 20)
        await scenario.deploy()
        await machine.until_state("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
        await rollouts.promote(scenario.db, scenario.id, actor="alice")
        await serving_revision(client, a, name, 2, through_a)
        through_a += await send(client, a, name, 10)
        sent = through_a + through_b
        assert set(sent) == {(1, 200), (2, 200)} and sent[1, 200] >= 50 and sent[2, 200] >= 11

        # Each proxy's /metrics shows its own requests by deployment name, revision number and status.
        metrics_a, metrics_b = await scrape(client, a), await scrape(client, b)
        for (revision, code), count in through_a.items():
            assert metrics_a[requests_total(name, revision, code)] == count
            assert metrics_a[durations_count(name, revision)] == count
        assert metrics_b[requests_total(name, 1, 200)] == 20
        assert requests_total(name, 2, 200) not in metrics_b

        # The aggregates each flushes in the background sum to everything sent through both.
        async def all_stored() -> bool:
            return [(await figures(scenario, r)).requests for r in (1, 2)] == [sent[1, 200], sent[2, 200]]

        await eventually(all_stored)
        writers = await scenario.db.fetch_all(PROXIES_OF, {"revision_id": scenario.revisions[0]})
        assert {w["proxy_id"] for w in writers} == {counts_a.proxy_id, counts_b.proxy_id}

    # Both proxies stopped after a last flush: still exactly what was sent, nothing doubled.
    for revision in (1, 2):
        stored = await figures(scenario, revision)
        assert (stored.requests, stored.errors, sum(stored.buckets)) == (sent[revision, 200], 0, sent[revision, 200])


async def test_the_builtin_success_rate_is_80_for_a_replica_failing_every_5th_request_and_100_for_a_healthy_one(
    scenario: Scenario, machine: Machine, database_url: str
) -> None:
    await scenario.given_deployment(replicas=1, strategy=blue_green(scale_down_delay_seconds=60))
    name = (await scenario.deployment()).name
    await scenario.deploy(await scenario.add_revision(env={"REPLICA_ERROR_PERCENT": "20"}))
    await machine.until_state("READY")

    async with proxy(database_url) as (base, counts), httpx.AsyncClient(timeout=10) as client:
        seen = await send(client, base, name, 100)
        assert seen == Counter({(1, 200): 80, (1, 500): 20})
        await counts.flush(scenario.db)

        rate = await builtin.measure(scenario.db, "request-success-rate", await target(scenario, 1))
        assert rate.value == 80.0, rate
        p99 = await builtin.measure(scenario.db, "request-duration-p99", await target(scenario, 1))
        assert p99.value in traffic.BUCKET_BOUNDS_MS and p99.value <= 2500, p99

        await scenario.deploy()
        await machine.until_state("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
        await rollouts.promote(scenario.db, scenario.id, actor="alice")
        await serving_revision(client, base, name, 2, seen)
        seen += await send(client, base, name, 100)
        await counts.flush(scenario.db)

    healthy = await builtin.measure(scenario.db, "request-success-rate", await target(scenario, 2))
    assert healthy.value == 100.0, healthy
    # Requests sent before the proxy followed the switch count for revision 1, at its own error rate.
    failing = await builtin.measure(scenario.db, "request-success-rate", await target(scenario, 1))
    answered_by_1 = seen[1, 200] + seen[1, 500]
    assert failing.value == pytest.approx(100 * seen[1, 200] / answered_by_1)
    assert 78 <= failing.value <= 82


async def test_a_request_no_route_answered_is_a_5xx_of_the_revision_tried_and_an_unknown_deployment_counts_nowhere(
    scenario: Scenario, machine: Machine, database_url: str
) -> None:
    await scenario.given_deployment(replicas=1)
    name = (await scenario.deployment()).name
    await scenario.deploy()
    await machine.until_state("READY")
    [route] = await scenario.routes(revision=1)

    async with proxy(database_url) as (base, _), httpx.AsyncClient(timeout=10) as client:
        assert await send(client, base, name, 4) == Counter({(1, 200): 4})
        pid = int(route.runtime_ref.removeprefix("pid:"))
        psutil.Process(pid).kill()

        async def gone() -> bool:
            return not replica_alive(pid, route.id)

        await eventually(gone)
        assert await send(client, base, name, 3) == Counter({(0, 502): 3})  # the route is still ACTIVE: nobody turns
        assert (await client.post(f"{base}/nobody-here/v1/predict")).status_code == 503

        metrics = await scrape(client, base)
        assert metrics[requests_total(name, 1, 200)] == 4
        assert metrics[requests_total(name, 1, 502)] == 3
        assert not [sample for sample in metrics if ("deployment", "nobody-here") in sample[1]]

    stored = await figures(scenario, 1)  # written by the last flush of the proxy as it stopped
    assert (stored.requests, stored.errors) == (7, 3)
    rate = await builtin.measure(scenario.db, "request-success-rate", await target(scenario, 1))
    assert rate.value == pytest.approx(400 / 7)


async def test_no_request_in_the_interval_is_an_error_reading_never_a_pass(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=1)
    await scenario.add_revision()

    async def reading(metric: str, seconds: int) -> Reading:
        return await builtin.measure(scenario.db, metric, await target(scenario, 1, seconds=seconds))

    for metric in ("request-success-rate", "request-duration-p99"):
        nothing = await reading(metric, 10)
        assert nothing.value is None and nothing.message.startswith("no requests to revision 1"), nothing

    counts = TrafficCounts()
    for _ in range(4):
        counts.count("m", destination(scenario, 1), 200, 0.003)
    await counts.flush(scenario.db)
    assert (await reading("request-success-rate", 10)).value == 100
    assert (await reading("request-duration-p99", 10)).value == 5.0  # 3 ms is in the first bucket, up to 5 ms

    await scenario.db.execute(AGE_ROWS, {"seconds": 30.0})  # those requests were 30 s ago
    stale = await reading("request-success-rate", 10)
    assert stale.value is None and "no requests" in stale.message
    assert (await reading("request-success-rate", 60)).value == 100


async def test_an_unknown_builtin_metric_is_an_error_reading_and_shadow_agreement_without_blue_is_skipped(
    scenario: Scenario,
) -> None:
    await scenario.given_deployment(replicas=1)
    await scenario.add_revision()
    assert builtin.METRICS == {"request-success-rate", "request-duration-p99", "shadow-agreement-rate"}
    reading = await builtin.measure(scenario.db, "request-count", await target(scenario, 1))
    assert reading.value is None and "request-count" in reading.message, reading
    # Shadow agreement (tests/test_shadow.py): on a first deploy there is no blue to mirror from.
    skipped = await builtin.measure(scenario.db, "shadow-agreement-rate", await target(scenario, 1))
    assert skipped.value is None and skipped.skipped and "first deploy" in skipped.message, skipped


async def test_a_flush_whose_commit_is_refused_keeps_its_counts_for_the_next_one(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=1)
    await scenario.add_revision()
    counts = TrafficCounts()
    for n in range(1, 11):
        counts.count("m", destination(scenario, 1), 500 if n % 5 == 0 else 200, 0.012)
    for sql in REFUSE_COMMITS:
        await scenario.db.execute(sql)

    await counts.flush(scenario.db)

    assert (await figures(scenario, 1)).requests == 0
    assert len(counts.unsettled) == 1  # PostgreSQL is asked what became of it before it is written again
    await scenario.db.execute(ACCEPT_COMMITS)
    for _ in range(5):
        counts.count("m", destination(scenario, 1), 200, 0.3)
    await counts.flush(scenario.db)
    await counts.flush(scenario.db)  # nothing left to write: nothing added twice
    stored = await figures(scenario, 1)
    assert (stored.requests, stored.errors) == (15, 2)
    assert stored.buckets[traffic.bucket_of(12)] == 10 and stored.buckets[traffic.bucket_of(300)] == 5
    assert (counts.pending, counts.unsettled) == ({}, [])


async def test_a_flush_whose_commit_went_through_unanswered_is_not_written_again(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=1)
    await scenario.add_revision()
    counts = TrafficCounts()
    for _ in range(7):
        counts.count("m", destination(scenario, 1), 200, 0.05)
    batch, counts.pending = counts.pending, {}
    xid = await traffic.record(scenario.db, proxy_id=counts.proxy_id, batch=batch)  # committed...
    counts.unsettled.append((xid, batch))  # ...but the proxy never heard the COMMIT's answer

    await counts.flush(scenario.db)

    assert (await figures(scenario, 1)).requests == 7
    assert (counts.pending, counts.unsettled) == ({}, [])


async def test_a_flush_of_a_transaction_still_in_progress_waits_and_is_written_once_it_aborted(
    scenario: Scenario,
) -> None:
    await scenario.given_deployment(replicas=1)
    await scenario.add_revision()
    counts = TrafficCounts()
    counts.count("m", destination(scenario, 1), 200, 0.05)
    batch, counts.pending = counts.pending, {}
    began, end = asyncio.Event(), asyncio.Event()
    xids: list[str] = []

    async def open_transaction() -> None:  # a flush's transaction whose COMMIT has not been answered yet
        with pytest.raises(RuntimeError):
            async with scenario.db.transaction():
                xids.append(await scenario.db.fetch_val(TRANSACTION_ID))
                began.set()
                await end.wait()
                raise RuntimeError("roll back")

    holder = asyncio.create_task(open_transaction())
    await began.wait()
    counts.unsettled.append((xids[0], batch))
    await counts.flush(scenario.db)
    assert len(counts.unsettled) == 1 and (await figures(scenario, 1)).requests == 0

    end.set()
    await holder
    await counts.flush(scenario.db)  # aborted: back into the pending counts...
    await counts.flush(scenario.db)  # ...which this one writes
    assert (await figures(scenario, 1)).requests == 1
    assert (counts.pending, counts.unsettled) == ({}, [])


class Relay:
    """A TCP relay in front of PostgreSQL that the test cuts and restores: the database unreachable for a moment."""

    def __init__(self, database_url: str) -> None:
        self.upstream = urlsplit(database_url)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.transports: set[asyncio.WriteTransport] = set()

    def url(self) -> str:
        user = f"{self.upstream.username}@" if self.upstream.username else ""
        return self.upstream._replace(netloc=f"{user}127.0.0.1:{self.port}").geturl()

    async def open(self) -> None:
        self.server = await asyncio.start_server(self.accept, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for transport in self.transports:
            transport.abort()  # connections drop as if the network went away
        self.transports.clear()

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream.hostname, self.upstream.port or 5432)
        except OSError:
            writer.transport.abort()
            return
        self.transports |= {writer.transport, up_writer.transport}
        await asyncio.gather(self.pipe(reader, up_writer), self.pipe(up_reader, writer))

    @staticmethod
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()


async def test_counts_of_a_flush_while_the_database_is_unreachable_are_written_by_the_next_one(
    scenario: Scenario, machine: Machine, database_url: str
) -> None:
    await scenario.given_deployment(replicas=1)
    name = (await scenario.deployment()).name
    await scenario.deploy()
    await machine.until_state("READY")
    relay = Relay(database_url)
    await relay.open()
    proxy_db = open_database(relay.url())

    async with proxy(database_url, db=proxy_db) as (base, counts), httpx.AsyncClient(timeout=10) as client:
        sent = await send(client, base, name, 10)
        await relay.cut()
        sent += await send(client, base, name, 5)  # the proxy keeps serving from the table it knows
        await counts.flush(proxy_db)
        assert counts.pending or counts.unsettled
        assert (await figures(scenario, 1)).requests == 0

        await relay.open()

        async def written() -> bool:
            await counts.flush(proxy_db)
            return (await figures(scenario, 1)).requests == 15

        await eventually(written)
        await counts.flush(proxy_db)
        assert sent == Counter({(1, 200): 15}) and (await figures(scenario, 1)).requests == 15
    await relay.cut()


@pytest.mark.parametrize("percent", [0, 1, 20, 33, 50, 100])
def test_the_replica_fails_exactly_its_percent_of_any_100_requests_in_a_row(percent: int) -> None:
    for start in (1, 7, 250):
        assert sum(fails(n, percent) for n in range(start, start + 100)) == percent


def test_the_replica_at_20_percent_fails_every_5th_request() -> None:
    assert [n for n in range(1, 21) if fails(n, 20)] == [5, 10, 15, 20]


@pytest.mark.parametrize(
    ("buckets", "index"),
    [
        ((100,), 0),
        ((99, 1), 0),  # the 99th of 100 is in the first bucket
        ((98, 2), 1),
        ((0, 0, 1), 2),
        ((50, 0, 0, 50), 3),
    ],
)
def test_the_p99_is_the_bucket_holding_the_request_at_rank_ceil_99_percent(
    buckets: tuple[int, ...], index: int
) -> None:
    assert builtin.quantile_bucket(buckets, 0.99) == index


def test_a_p99_above_the_largest_bound_reads_as_that_bound_and_says_so() -> None:
    buckets = (0,) * len(traffic.BUCKET_BOUNDS_MS) + (3,)
    reading = builtin.duration_p99(traffic.Figures(requests=3, errors=0, buckets=buckets))
    assert reading.value == traffic.BUCKET_BOUNDS_MS[-1] and "above" in reading.message
