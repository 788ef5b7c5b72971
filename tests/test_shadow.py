"""Shadow traffic (SPEC §6): real replica processes behind a real `switchover proxy` mirror a share of the requests
blue answers to green, compare the answers, and write the agreement to PostgreSQL, where `Deployment.shadowStats`
and the BUILTIN `shadow-agreement-rate` read it. Waiting is polling with a deadline.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from itertools import pairwise
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scheduler.providers import Target, builtin
from store import reads, replicas, rollouts, route_health, traffic
from store.database import open_database
from store.models import AnalysisSpec, MetricCheck, MetricProvider, RouteStatus, ShadowCompare, ShadowSpec
from store.replicas import Destination
from switchover.traffic_counts import TrafficCounts
from tests import test_operate
from tests.graphql import error_code, gql
from tests.live_server import serving
from tests.runtime_helpers import Machine
from tests.scenario import Scenario, blue_green
from tests.state import snapshot
from tests.test_operate import switchover
from tests.test_query_count import count_statements

# What differs between any two replicas of the demo model, whatever it predicts.
IDENTITY = ("$.revision", "$.image", "$.route", "$.shadow")
# Test-only SQL: start the figures from zero, move a deployment's counts back in time, and read a run's measurements.
FORGET_SHADOW = ["DELETE FROM shadow_traffic", "DELETE FROM shadow_samples"]
SHIFT_SHADOW = """UPDATE shadow_traffic SET interval_start = interval_start - make_interval(secs => :seconds)
WHERE deployment_id = :id"""
api = test_operate.api  # the CLI's server, a fixture
MEASUREMENTS = "SELECT value, passed, message FROM analysis_measurements WHERE run_id = :run_id ORDER BY seq"


class Proxy:
    def __init__(self, base: str, counts: TrafficCounts, mirrors: set[asyncio.Task[None]]) -> None:
        self.base, self.counts, self.mirrors = base, counts, mirrors

    async def settled(self) -> None:
        """Until no copy is in flight."""

        async def none_in_flight() -> bool:
            return not self.mirrors

        await eventually(none_in_flight)


@asynccontextmanager
async def proxy(database_url: str, **options: Any) -> AsyncIterator[Proxy]:
    from switchover.proxy import create_proxy  # only the tests that mirror through a real proxy need it

    app = create_proxy(open_database(database_url), database_url, flush_seconds=3600, **options)
    async with serving(app, lifespan="on") as base:
        yield Proxy(base, app.state.counts, app.state.mirrors)


async def eventually(condition: Callable[[], Awaitable[bool]], *, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"not reached in {within} s"
        await asyncio.sleep(0.05)


async def green_awaiting_promotion(
    scenario: Scenario, machine: Machine, shadow: ShadowSpec | None, green_env: dict[str, str]
) -> str:
    """Revision 1 serving, revision 2 (with `green_env`) healthy beside it without traffic; the deployment's name."""
    await scenario.given_deployment(replicas=1, strategy=blue_green(shadow=shadow))
    await scenario.deploy()
    await machine.until_state("READY")
    await scenario.deploy(await scenario.add_revision(green_env))
    await machine.until_state("DEPLOYING/DEPLOYING_AWAITING_PROMOTION")
    return (await scenario.deployment()).name


async def mirroring(client: httpx.AsyncClient, url: str) -> None:
    """Until the proxy has loaded the shadow spec and green's route (a request mirrored and ended)."""

    async def mirrored() -> bool:
        await client.post(url, content=b"probe")
        return await shadow_outcomes(client, url.rsplit("/", 3)[0]) != {}

    await eventually(mirrored)


async def shadow_outcomes(client: httpx.AsyncClient, base: str, name: str = "switchover_proxy_shadow") -> dict:
    text = (await client.get(f"{base}/metrics")).text
    return {
        (s.name, s.labels.get("outcome") or s.labels.get("reason")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith(name) and s.name.endswith("_total")
    }


async def ended(counts: TrafficCounts, scenario: Scenario, n: int) -> None:
    """Until `n` mirrored requests to revision 2 have ended (counted, not yet flushed)."""

    async def done() -> bool:
        mirrored = sum(
            c.shadow.requests for k, c in counts.pending.items() if k[:2] == (scenario.id, scenario.revisions[1])
        )
        return mirrored >= n

    await eventually(done)


def target(scenario: Scenario, name: str, revision: int = 2) -> Target:
    return Target(scenario.id, name, scenario.project_id, scenario.revisions[revision - 1], revision, 300)


@pytest.mark.parametrize(
    ("spec", "green_env", "agreed", "disagreed", "green_errors"),
    [
        (ShadowSpec(ignore_fields=IDENTITY), {}, 20, 0, 0),
        (ShadowSpec(ignore_fields=IDENTITY), {"REPLICA_DRIFT_PERCENT": "25"}, 15, 5, 0),
        (ShadowSpec(tolerance=0.01, ignore_fields=IDENTITY), {"REPLICA_SCORE_OFFSET": "0.005"}, 20, 0, 0),
        (ShadowSpec(tolerance=0.01, ignore_fields=IDENTITY), {"REPLICA_SCORE_OFFSET": "0.5"}, 0, 20, 0),
        (ShadowSpec(ignore_fields=("$.revision", "$.image")), {}, 0, 20, 0),  # $.route and $.shadow differ
        (ShadowSpec(compare=ShadowCompare.EXACT), {}, 0, 20, 0),
        (ShadowSpec(ignore_fields=IDENTITY), {"REPLICA_ERROR_PERCENT": "50"}, 10, 0, 10),
    ],
    ids=["agree", "drift", "within-tolerance", "beyond-tolerance", "unignored-fields", "exact", "green-errors"],
)
async def test_mirrored_requests_end_as_agreed_disagreed_or_green_errors_and_the_caller_only_sees_blue(
    scenario: Scenario,
    machine: Machine,
    database_url: str,
    spec: ShadowSpec,
    green_env: dict[str, str],
    agreed: int,
    disagreed: int,
    green_errors: int,
) -> None:
    name = await green_awaiting_promotion(scenario, machine, spec, green_env)
    async with proxy(database_url) as p, httpx.AsyncClient(timeout=10) as client:
        url = f"{p.base}/{name}/v1/predict"
        await mirroring(client, url)
        await p.settled()
        await p.counts.flush(scenario.db)  # the probes go to the database; what follows is counted apart
        for sql in FORGET_SHADOW:
            await scenario.db.execute(sql)

        answers = [await client.post(url, content=b"hello", headers={"authorization": "Bearer s3cret"})
                   for _ in range(20)]  # fmt: skip
        await ended(p.counts, scenario, 20)
        await p.counts.flush(scenario.db)

    assert {(a.status_code, a.json()["revision"], "shadow" in a.json()) for a in answers} == {(200, 1, False)}
    stats = await traffic.shadow_stats(scenario.db, scenario.id, scenario.revisions[1])
    assert (stats.agreed, stats.disagreed, stats.green_errors) == (agreed, disagreed, green_errors)
    assert len(stats.samples) == min(disagreed, 10)  # the newest ten disagreements
    for sample in stats.samples:
        assert sample.request == "POST /v1/predict\n\nhello" and "s3cret" not in sample.request
        assert sample.blue_answer.startswith("200\n\n") and sample.green_answer.startswith("200\n\n")
    if disagreed and spec.compare is ShadowCompare.EXACT:
        assert '"shadow":true' in stats.samples[0].green_answer  # the copy carried x-switchover-shadow: 1
    reading = await builtin.measure(scenario.db, "shadow-agreement-rate", target(scenario, name))
    assert reading.value == 100 * agreed / 20, reading


async def test_a_green_that_never_answers_costs_the_caller_nothing_and_copies_in_flight_stay_bounded(
    scenario: Scenario, machine: Machine, database_url: str
) -> None:
    spec = ShadowSpec(ignore_fields=IDENTITY)
    name = await green_awaiting_promotion(scenario, machine, spec, {"REPLICA_ANSWER_DELAY_SECONDS": "3600"})
    options = {"shadow_timeout": 2.0, "shadow_max_in_flight": 3}
    async with proxy(database_url, **options) as p, httpx.AsyncClient(timeout=10) as client:
        base = p.base
        url = f"{base}/{name}/v1/predict"

        async def loaded() -> bool:  # the proxy mirrors: a copy is in flight or was refused for the bound
            await client.post(url, content=b"probe")
            return await shadow_outcomes(client, base) != {}

        await eventually(loaded)
        durations = []
        for _ in range(20):
            started = time.perf_counter()
            answer = await client.post(url, content=b"hello")
            durations.append(time.perf_counter() - started)
            assert answer.status_code == 200 and answer.json()["revision"] == 1
        outcomes = await shadow_outcomes(client, base)

        async def timed_out() -> bool:
            return (await shadow_outcomes(client, base)).get(("switchover_proxy_shadow_requests_total",
                                                              "green_error"), 0) >= 3  # fmt: skip

        await eventually(timed_out)

    assert max(durations) < 1.0, durations  # blue answers at once; the copies wait on their own
    assert outcomes[("switchover_proxy_shadow_skipped_total", "too_many_in_flight")] >= 17  # at most 3 in flight


async def test_a_body_above_the_limit_is_not_mirrored_but_counted(
    scenario: Scenario, machine: Machine, database_url: str
) -> None:
    name = await green_awaiting_promotion(scenario, machine, ShadowSpec(ignore_fields=IDENTITY), {})
    async with proxy(database_url, shadow_max_body=100) as p, httpx.AsyncClient(timeout=10) as client:
        base = p.base
        url = f"{base}/{name}/v1/predict"
        await mirroring(client, url)
        await p.settled()
        before = await shadow_outcomes(client, base)
        for _ in range(5):
            big = await client.post(url, content=b"x" * 101)
            assert big.status_code == 200 and big.json()["revision"] == 1
        await client.post(url, content=b"x" * 100)

        async def small_one_ended() -> bool:
            now = await shadow_outcomes(client, base)
            return sum(v for k, v in now.items() if k[0] == "switchover_proxy_shadow_requests_total") > sum(
                v for k, v in before.items() if k[0] == "switchover_proxy_shadow_requests_total"
            )

        await eventually(small_one_ended)
        after = await shadow_outcomes(client, base)

    assert after[("switchover_proxy_shadow_skipped_total", "body_too_large")] == 5
    mirrored = sum(v for k, v in after.items() if k[0] == "switchover_proxy_shadow_requests_total")
    assert mirrored == sum(v for k, v in before.items() if k[0] == "switchover_proxy_shadow_requests_total") + 1


async def test_without_a_shadow_spec_nothing_is_mirrored(
    scenario: Scenario, machine: Machine, database_url: str
) -> None:
    name = await green_awaiting_promotion(scenario, machine, None, {})
    async with proxy(database_url) as p, httpx.AsyncClient(timeout=10) as client:
        for _ in range(10):
            assert (await client.post(f"{p.base}/{name}/v1/predict", content=b"x")).json()["revision"] == 1
        assert await shadow_outcomes(client, p.base) == {} and not p.mirrors


SHADOW_STATS = """query($d: ID!) { deployment(id: $d) { strategy { blueGreen { shadow { percent compare tolerance
  ignoreFields } } } shadowStats { requests agreed disagreed greenErrors samples { request blueAnswer greenAnswer } }
  } }"""


async def test_shadow_stats_are_read_through_the_api_for_the_revision_being_deployed(
    scenario: Scenario, machine: Machine, database_url: str, client: httpx.AsyncClient
) -> None:
    spec = ShadowSpec(percent=100, tolerance=0.5, ignore_fields=IDENTITY)
    name = await green_awaiting_promotion(scenario, machine, spec, {"REPLICA_DRIFT_PERCENT": "50"})
    async with proxy(database_url) as p, httpx.AsyncClient(timeout=10) as http:
        for _ in range(4):
            await http.post(f"{p.base}/{name}/v1/predict", content=b"hi")
        await ended(p.counts, scenario, 1)
    # The proxy stopped: every copy ended and was flushed.

    body = await gql(client, SHADOW_STATS, {"d": scenario.id})

    deployment = body["data"]["deployment"]
    assert deployment["strategy"]["blueGreen"]["shadow"] == {
        "percent": 100, "compare": "JSON", "tolerance": 0.5, "ignoreFields": list(IDENTITY)}  # fmt: skip
    stats = deployment["shadowStats"]
    assert stats["requests"] == stats["agreed"] + stats["disagreed"] + stats["greenErrors"] >= 1
    assert len(stats["samples"]) == stats["disagreed"]
    for sample in stats["samples"]:
        assert sample["request"] == "POST /v1/predict\n\nhi"
        assert sample["blueAnswer"].startswith("200\n\n") and '"revision":2' in sample["greenAnswer"]


async def test_shadow_stats_are_null_when_no_revision_is_being_deployed(
    scenario: Scenario, client: httpx.AsyncClient
) -> None:
    await scenario.given_deployment(replicas=1, strategy=blue_green(shadow=ShadowSpec()))
    body = await gql(client, SHADOW_STATS, {"d": scenario.id})
    assert body["data"]["deployment"]["shadowStats"] is None


async def test_a_large_sample_is_truncated_to_4_kib_and_only_ten_newest_are_kept(scenario: Scenario) -> None:
    await scenario.given_deployment(replicas=1)
    await scenario.add_revision()
    counts = TrafficCounts()
    destination = Destination("route", "http://127.0.0.1:9", 1.0, scenario.id, scenario.revisions[0], 1)
    for n in range(12):
        sample = traffic.ShadowSample(f"POST /{n}\n\n" + "é" * 5000, "200\n\n{}", "200\n\n[]")
        counts.shadow("m", destination, "disagreed", sample)
    await counts.flush(scenario.db)

    stats = await traffic.shadow_stats(scenario.db, scenario.id, scenario.revisions[0])
    assert (stats.requests, stats.disagreed, len(stats.samples)) == (12, 12, 10)
    assert [s.request.split("\n")[0] for s in stats.samples] == [f"POST /{n}" for n in range(11, 1, -1)]
    assert all(len(s.request.encode()) <= 4096 for s in stats.samples)


async def test_shadow_agreement_on_a_first_deploy_is_skipped_and_recorded_as_such(scenario: Scenario) -> None:
    check = MetricCheck("agreement", MetricProvider.BUILTIN, query="shadow-agreement-rate", min=99.0)
    spec = AnalysisSpec((check,), count=1)
    await scenario.given_deployment(replicas=1, strategy=blue_green(shadow=ShadowSpec(), pre_promotion_analysis=spec))
    await scenario.deploy()
    await scenario.tick()
    await scenario.healthy(revision=1)
    for _ in range(10):
        await scenario.tick()
        if await scenario.state() == "READY":
            break
        await scenario.shift_time(10)
    assert await scenario.state() == "READY", await scenario.history()
    [(_, run)] = (await reads.analysis_run_pages(scenario.db, [scenario.id]))[scenario.id].items
    measurements = await scenario.db.fetch_all(MEASUREMENTS, {"run_id": run.id})
    assert run.phase.value == "SUCCESSFUL"
    assert [(m["value"], m["passed"]) for m in measurements] == [(None, None)]
    assert measurements[0]["message"].startswith("skipped: a first deploy")


# --- one rollout's statistics -------------------------------------------------------------------------------

STATS_OVER_TIME = """query($d: ID!, $seconds: Int, $step: Int) { deployment(id: $d) { shadowStats { requests agreed
  disagreed greenErrors samples { request } intervals(seconds: $seconds, step: $step) { start requests agreed disagreed
  greenErrors } } } }"""


async def green_destination(scenario: Scenario) -> Destination:
    """Green's route as the proxy's routing table holds it (with the rollout it belongs to)."""
    for route in await scenario.live_routes(revision=2):
        await route_health.report_route_health(
            scenario.db, route.id, RouteStatus.HEALTHY, endpoint_url="http://127.0.0.1:9", actor="orchestrator"
        )
    table = await replicas.traffic_table(scenario.db)
    [green] = table.preview[(await scenario.deployment()).name]
    return green


async def mirrored(scenario: Scenario, green: Destination, outcomes: list[str]) -> None:
    """One proxy mirrored requests to `green` that ended as `outcomes`, and flushed them."""
    counts = TrafficCounts()
    for n, outcome in enumerate(outcomes):
        sample = traffic.ShadowSample(f"POST /{n}", "200\n\n1", "200\n\n2") if outcome == "disagreed" else None
        counts.shadow("m", green, outcome, sample)
    await counts.flush(scenario.db)


async def test_the_same_revision_deployed_again_after_a_rollback_starts_from_zero(
    scenario: Scenario, client: httpx.AsyncClient
) -> None:
    # Given revision 2 was mirrored to (3 agreed, 1 disagreed) and then rolled back
    await scenario.given_deployment(replicas=1, strategy=blue_green(shadow=ShadowSpec()))
    await scenario.awaiting_promotion_of_revision_2()
    first = await green_destination(scenario)
    await mirrored(scenario, first, ["agreed", "agreed", "agreed", "disagreed"])
    before = (await gql(client, STATS_OVER_TIME, {"d": scenario.id}))["data"]["deployment"]["shadowStats"]
    assert (before["requests"], before["agreed"], len(before["samples"])) == (4, 3, 1)
    await rollouts.begin_rollback(scenario.db, scenario.id, actor="bob", reason="disagrees")
    await scenario.tick()
    await scenario.finish_stopping()
    assert await scenario.state() == "READY"

    # When the same revision is deployed again, and a proxy still on the old table flushes a late copy
    await scenario.deploy(scenario.revisions[1])
    await scenario.tick()
    await scenario.healthy(revision=2)
    await scenario.tick()
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION", await scenario.history()
    await mirrored(scenario, first, ["disagreed"])

    # Then the API, the BUILTIN metric and the intervals see nothing of the earlier rollout
    body = await gql(client, STATS_OVER_TIME, {"d": scenario.id})
    stats = body["data"]["deployment"]["shadowStats"]
    assert (stats["requests"], stats["samples"]) == (0, [])
    assert sum(i["requests"] for i in stats["intervals"]) == 0
    name = (await scenario.deployment()).name
    reading = await builtin.measure(scenario.db, "shadow-agreement-rate", target(scenario, name))
    assert reading.value is None and "no requests mirrored" in reading.message

    # And what is mirrored in this rollout counts from zero
    second = await green_destination(scenario)
    assert second.rollout_epoch > first.rollout_epoch
    await mirrored(scenario, second, ["agreed", "green_error"])
    stats = (await gql(client, STATS_OVER_TIME, {"d": scenario.id}))["data"]["deployment"]["shadowStats"]
    assert (stats["requests"], stats["agreed"], stats["greenErrors"], stats["samples"]) == (2, 1, 1, [])
    reading = await builtin.measure(scenario.db, "shadow-agreement-rate", target(scenario, name))
    assert reading.value == 50.0, reading
    epoch_of_first = replace(target(scenario, name), rollout_epoch=first.rollout_epoch)
    # (the late copy counted for the rollout it was mirrored in: 3 of 5)
    assert (await builtin.measure(scenario.db, "shadow-agreement-rate", epoch_of_first)).value == 60.0


async def test_agreement_over_time_is_summed_over_proxies_per_interval_of_the_database_clock(
    scenario: Scenario, client: httpx.AsyncClient
) -> None:
    # Given two proxies mirrored to green now, and one did 25 s earlier (its row moved back in time)
    await scenario.given_deployment(replicas=1, strategy=blue_green(shadow=ShadowSpec()))
    await scenario.awaiting_promotion_of_revision_2()
    green = await green_destination(scenario)
    await mirrored(scenario, green, ["agreed", "disagreed"])
    await scenario.db.execute(SHIFT_SHADOW, {"id": scenario.id, "seconds": 25.0})
    await mirrored(scenario, green, ["agreed", "agreed"])
    await mirrored(scenario, green, ["green_error"])

    # When the dashboard asks for the last minute in 10 s intervals
    body = await gql(client, STATS_OVER_TIME, {"d": scenario.id, "seconds": 60, "step": 10})

    # Then it gets 6 intervals, oldest first, aligned on 10 s, the older flush 2 or 3 intervals before the newer ones
    stats = body["data"]["deployment"]["shadowStats"]
    intervals = stats["intervals"]
    starts = [datetime.fromisoformat(i["start"]) for i in intervals]
    assert len(intervals) == 6 and starts == sorted(starts) and all(t.second % 10 == 0 for t in starts)
    assert {(b - a).total_seconds() for a, b in pairwise(starts)} == {10.0}

    def total(chosen: list[dict[str, int]]) -> tuple[int, int, int]:
        return tuple(sum(i[k] for i in chosen) for k in ("agreed", "disagreed", "greenErrors"))  # type: ignore[return-value]

    assert total(intervals[4:]) == (2, 0, 1)  # the newer flushes, in the open interval or the one before
    assert total(intervals[1:4]) == (1, 1, 0) and total(intervals[:1]) == (0, 0, 0)
    assert stats["requests"] == sum(i["requests"] for i in intervals) == 5


async def test_the_cli_status_shows_agreement_and_the_newest_disagreement_cut_to_a_few_lines(
    scenario: Scenario, api: str
) -> None:
    # Given revision 2 mirrored to: 3 agreed, then a disagreement with long answers
    await scenario.given_deployment(replicas=1, strategy=blue_green(shadow=ShadowSpec()))
    await scenario.awaiting_promotion_of_revision_2()
    green = await green_destination(scenario)
    counts = TrafficCounts()
    for _ in range(3):
        counts.shadow("m", green, "agreed")
    lines = "\n".join(f'{{"line": {n}}}' for n in range(20))
    counts.shadow("m", green, "disagreed", traffic.ShadowSample("POST /v1/predict\n\n{\"x\": 1}", "200\n\n" + lines,
                                                               "200\n\n" + "9" * 500))  # fmt: skip
    await counts.flush(scenario.db)

    # When an operator asks for its status
    code, out = await switchover("status", (await scenario.deployment()).name, url=api)

    # Then it shows the agreement, and the disagreement's request, blue and green answers, a few short lines each
    assert code == 0, out
    assert "shadow: 75.0 % agreed of 4 mirrored requests (1 disagreed, 0 green errors)" in out
    shown = out[out.index("newest disagreement:") :].splitlines()
    assert [line.strip() for line in shown[1:8]] == [
        "request: POST /v1/predict", '{"x": 1}',
        "blue:    200", '{"line": 0}', '{"line": 1} …',
        "green:   200", "9" * 99 + "…",
    ]  # fmt: skip


PAGE = """query($first: Int!) { deployments(first: $first) { edges { node { id shadowStats { requests
  samples { request } intervals(seconds: 60, step: 10) { requests } } } } } }"""


async def test_shadow_stats_of_a_page_of_deployments_take_the_same_statements_for_1_and_4(
    scenario: Scenario, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts: dict[int, int] = {}
    created: list[str] = []
    for size in (1, 4):
        while len(created) < size:  # each awaiting promotion with 2 mirrored requests, one a disagreement
            one = Scenario(scenario.db)
            await one.given_deployment(replicas=1, strategy=blue_green(shadow=ShadowSpec()))
            await one.awaiting_promotion_of_revision_2()
            await mirrored(one, await green_destination(one), ["agreed", "disagreed"])
            created.append(one.id)
        with monkeypatch.context() as patch:
            sent = count_statements(scenario.db, patch)
            edges = (await gql(client, PAGE, {"first": size}))["data"]["deployments"]["edges"]
        stats = [e["node"]["shadowStats"] for e in edges]
        assert [(st["requests"], len(st["samples"]), sum(i["requests"] for i in st["intervals"])) for st in stats] == [
            (2, 1, 2)
        ] * size
        counts[size] = len(sent)
    # The page, then one batched statement each for the figures, the samples and the intervals.
    assert counts[1] == counts[4] <= 4, counts


@pytest.mark.parametrize(
    ("seconds", "step", "field"),
    [(0, 10, "seconds"), (86_401, 300, "seconds"), (60, 0, "step"), (60, 3601, "step"), (3601, 10, "intervals")],
)
async def test_intervals_out_of_bounds_are_refused(
    scenario: Scenario, client: httpx.AsyncClient, seconds: int, step: int, field: str
) -> None:
    await scenario.given_deployment(replicas=1, strategy=blue_green(shadow=ShadowSpec()))
    await scenario.awaiting_promotion_of_revision_2()

    body = await gql(client, STATS_OVER_TIME, {"d": scenario.id, "seconds": seconds, "step": step})

    assert error_code(body) == "BAD_USER_INPUT" and field in body["errors"][0]["message"], body


# --- not enough data -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agreeing", "phase", "state", "message"),
    [
        (5, "ERROR", "READY", "not enough data: 5 (minRequests 20) requests mirrored to revision 2"),
        (20, "SUCCESSFUL", "DEPLOYING/DEPLOYING_AWAITING_PROMOTION", "100.00 % of 20 mirrored requests agreed"),
    ],
)
async def test_too_few_mirrored_requests_are_not_enough_data_and_the_run_ends_as_an_error_never_a_pass(
    scenario: Scenario, agreeing: int, phase: str, state: str, message: str
) -> None:
    # Given a pre-promotion analysis demanding 99 % agreement on at least 20 mirrored requests per check
    check = MetricCheck("agreement", MetricProvider.BUILTIN, query="shadow-agreement-rate", min=99.0, min_requests=20)
    spec = AnalysisSpec((check,), count=1)
    strategy = blue_green(shadow=ShadowSpec(), pre_promotion_analysis=spec, max_retries=2)
    await scenario.given_deployment(replicas=1, strategy=strategy)
    await scenario.deploy()
    await scenario.tick()
    await scenario.healthy(revision=1)
    for _ in range(5):  # a first deploy: the agreement check is skipped
        await scenario.tick()
        await scenario.shift_time(10)
    assert await scenario.state() == "READY", await scenario.history()

    # When green is mirrored `agreeing` requests, all of them agreeing, and the checks are taken
    await scenario.deploy(await scenario.add_revision())
    await scenario.tick()
    await mirrored(scenario, await green_destination(scenario), ["agreed"] * agreeing)
    for _ in range(4):
        await scenario.tick()
        await scenario.shift_time(10)

    # Then too few of them is no number, twice (maxRetries): the run ends as ERROR and the rollout is rolled back
    [(_, run), *_] = (await reads.analysis_run_pages(scenario.db, [scenario.id]))[scenario.id].items
    measurements = await scenario.db.fetch_all(MEASUREMENTS, {"run_id": run.id})
    assert (run.phase.value, await scenario.state()) == (phase, state), await scenario.history()
    assert all(m["message"].startswith(message) for m in measurements), [m["message"] for m in measurements]
    assert [m["passed"] for m in measurements] == ([None, None] if phase == "ERROR" else [True])


# --- bad input ------------------------------------------------------------------------------------------------

CREATE = "mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment { id } } }"
AGREEMENT = {"name": "agreement", "provider": "BUILTIN", "query": "shadow-agreement-rate", "min": 99.0}


def create_input(blue_green_input: dict[str, Any]) -> dict[str, Any]:
    name = f"s-{time.monotonic_ns() % 10**9}"
    strategy = {"type": "BLUE_GREEN", "blueGreen": blue_green_input}
    return {"projectId": "6f1c2a7e-0d4b-4f7e-9a51-3c0e8d2b9a10", "name": name, "replicas": 1, "strategy": strategy}


@pytest.mark.parametrize(
    ("blue_green_input", "field"),
    [
        ({"shadow": {"percent": 0}}, "shadow.percent"),
        ({"shadow": {"percent": 101}}, "shadow.percent"),
        ({"shadow": {"tolerance": -0.1}}, "shadow.tolerance"),
        ({"shadow": {"ignoreFields": ["$.id", "$[?"]}}, "shadow.ignoreFields[1]"),
        ({"shadow": {"ignoreFields": [""]}}, "shadow.ignoreFields[0]"),
        ({"prePromotionAnalysis": {"metrics": [AGREEMENT]}}, "prePromotionAnalysis.metrics[0].query"),
        ({"shadow": {}, "postPromotionAnalysis": {"metrics": [AGREEMENT]}}, "postPromotionAnalysis.metrics[0].query"),
        (
            {"shadow": {}, "prePromotionAnalysis": {"metrics": [{**AGREEMENT, "minRequests": 0}]}},
            "prePromotionAnalysis.metrics[0].minRequests",
        ),
        (
            {
                "prePromotionAnalysis": {
                    "metrics": [
                        {
                            **AGREEMENT,
                            "provider": "WEB",
                            "query": None,
                            "url": "https://metrics.example/x",
                            "minRequests": 5,
                        }
                    ]
                }
            },
            "prePromotionAnalysis.metrics[0].minRequests",
        ),
    ],
)
async def test_a_bad_shadow_spec_is_refused_naming_its_field_and_creates_nothing(
    client: httpx.AsyncClient, db: Any, blue_green_input: dict[str, Any], field: str
) -> None:
    before = await snapshot(db)

    body = await gql(client, CREATE, {"i": create_input(blue_green_input)})

    assert error_code(body) == "BAD_USER_INPUT", body
    assert field in body["errors"][0]["message"], body
    assert await snapshot(db) == before


async def test_a_shadow_spec_with_an_agreement_check_is_accepted_with_defaults(client: httpx.AsyncClient) -> None:
    query = """mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment {
      strategy { blueGreen { shadow { percent compare tolerance ignoreFields } } } } } }"""
    blue_green_input = {"shadow": {"percent": 10}, "prePromotionAnalysis": {"metrics": [AGREEMENT]}}

    body = await gql(client, query, {"i": create_input(blue_green_input)})

    assert body["data"]["createDeployment"]["deployment"]["strategy"]["blueGreen"]["shadow"] == {
        "percent": 10, "compare": "JSON", "tolerance": 0.0, "ignoreFields": []}  # fmt: skip
