"""Webhooks (SPEC §8): an outbox written with every history row, delivered signed, in order, at least once."""

import asyncio
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler import webhooks as sender
from scheduler.providers import Providers
from scheduler.runner import run_once
from scheduler.table import TRANSITIONS
from store import deployments, webhooks
from store.errors import BadUserInput
from store.models import HISTORY_PHASES, RouteStatus, WebhookDeliveryStatus
from store.validation import check_outbound_url
from switchover.app import create_app
from switchover.settings import Settings
from tests.graphql import data, error_code, gql
from tests.live_server import serving
from tests.scenario import Scenario, blue_green
from tests.state import snapshot
from tests.tokens import bearer

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "a-webhook-secret-of-some-length"

CREATE_WEBHOOK = """
mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { webhook { id projectId url events createdBy } } }
"""
DELIVERIES = """
query($id: ID!, $after: String) {
  webhookDeliveries(webhookId: $id, first: 100, after: $after) {
    edges { cursor node { id webhookId deploymentId historyId phase status attempts lastError lastStatusCode
                          nextAttemptAt deliveredAt } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
REDELIVER = """
mutation($id: ID!) { redeliverWebhook(input: {deliveryId: $id}) { delivery { id status attempts } } }
"""

# Tests move time by shifting stored timestamps: a retry (or an ended lease) becomes due now.
DUE_NOW = "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE status = 'PENDING'"
HISTORY = "SELECT id, phase FROM deployment_history WHERE deployment_id = :id ORDER BY seq"
STATUSES = "SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY status"


@dataclass
class Received:
    delivery_id: str
    body: bytes
    signature: str
    answered: int

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.signature)


@dataclass
class Receiver:
    """A webhook receiver: answers 500 to the first `failures` requests (and to those `refuse` picks), 200 after."""

    failures: int = 0
    refuse: Callable[[dict[str, Any]], bool] = lambda payload: False
    hold: int | None = None  # the request of this number (1-based) waits for `release` before it answers
    held: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[Received] = field(default_factory=list)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            body = await request.body()
            number = len(self.requests) + 1
            failing = number <= self.failures or self.refuse(json.loads(body))
            received = Received(request.headers["x-switchover-delivery"], body,
                                request.headers["x-switchover-signature"], 500 if failing else 200)  # fmt: skip
            self.requests.append(received)
            if number == self.hold:
                self.held.set()
                await self.release.wait()
            return Response("no thanks" if failing else "ok", status_code=received.answered)

        return Starlette(routes=[Route("/hook", receive, methods=["POST"])])

    def accepted(self) -> list[Received]:
        return [r for r in self.requests if r.answered == 200]

    def first_seen_order(self) -> list[str]:
        """History ids in the order their deliveries first arrived (duplicates of a retried id dropped)."""
        return list(dict.fromkeys(r.payload["history"]["id"] for r in self.requests))


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The API of these tests, as their scheduler, may name the receivers they serve on loopback."""
    return Settings(database_url=database_url, insecure=True, introspection=True, allow_loopback_urls=True)


@pytest.fixture
async def loopback() -> AsyncIterator[Providers]:
    p = Providers(allow_loopback=True)
    yield p
    await p.aclose()


async def new_deployment(db: Any, project_id: str, name: str = "ranker") -> Scenario:
    s = Scenario(db)
    created = await deployments.create_deployment(db, project_id=project_id, name=name, replicas=1,
                                                  strategy=blue_green(auto_promote=True), actor="alice")  # fmt: skip
    s.id, s.project_id = created.id, created.project_id
    return s


async def history_ids(db: Any, deployment_id: str) -> list[str]:
    return [str(row["id"]) for row in await db.fetch_all(HISTORY, {"id": deployment_id})]


async def statuses(db: Any) -> dict[str, int]:
    return {row["status"]: row["n"] for row in await db.fetch_all(STATUSES)}


async def deliver_all(db: Any, providers: Providers, *, within: float = 30) -> None:
    """Scheduler passes, each retry made due at once, until nothing is pending."""
    deadline = time.monotonic() + within
    while (await statuses(db)).get("PENDING"):
        assert time.monotonic() < deadline, await statuses(db)
        await run_once(db, providers=providers)
        await db.execute(DUE_NOW)


async def until(condition: Callable[[], Awaitable[bool]], *, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.05)


# Pure decisions ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [(1, 1, 2), (2, 2, 4), (3, 4, 8), (4, 8, 16), (5, 16, 32), (6, 30, 60), (9, 30, 60)],
)
def test_retries_back_off_from_within_five_seconds_doubling_up_to_sixty(attempts: int, low: float, high: float) -> None:
    delays = [sender.retry_delay(attempts, jitter) for jitter in (0.0, 0.5, 0.999999)]
    assert all(low <= d <= high for d in delays), delays
    assert len(set(delays)) == 3  # jitter spreads receivers that failed together


def test_a_failed_attempt_is_retried_until_the_limit_then_dead_lettered() -> None:
    failed, ok = sender.Attempt(500, "answered 500"), sender.Attempt(204, None)
    assert sender.decide(1, ok, 0.3).status is WebhookDeliveryStatus.DELIVERED
    assert sender.decide(1, failed, 0.3).status is WebhookDeliveryStatus.PENDING
    assert sender.decide(sender.MAX_ATTEMPTS - 1, failed, 0.3).status is WebhookDeliveryStatus.PENDING
    assert sender.decide(sender.MAX_ATTEMPTS, failed, 0.3).status is WebhookDeliveryStatus.DEAD
    assert sender.decide(sender.MAX_ATTEMPTS, ok, 0.3).status is WebhookDeliveryStatus.DELIVERED


def test_every_phase_the_code_writes_can_be_subscribed_to() -> None:
    written = {t.phase for t in TRANSITIONS.values()}
    for path in [*(ROOT / "store").glob("*.py"), *(ROOT / "scheduler").glob("*.py")]:
        text = path.read_text()
        written |= set(re.findall(r'phase="([a-z_]+)"', text))
        constants = dict(re.findall(r'^([A-Z_]+) = "([a-z_]+)"', text, re.MULTILINE))
        used = {"PHASE", "PROMOTE", *re.findall(r"phase=([A-Z_]+)\b", text)}
        written |= {constants[name] for name in used if name in constants}
    assert written - HISTORY_PHASES == set()


# The outbox ----------------------------------------------------------------------------------------------------


async def test_only_live_webhooks_of_the_project_that_want_the_phase_get_a_delivery(db: Any) -> None:
    project, other = str(uuid.uuid4()), str(uuid.uuid4())
    every = await webhooks.create(db, project_id=project, url="http://hooks.test/a", events=None,
                                  secret=WEBHOOK_SECRET, actor="alice")  # fmt: skip
    deploys = await webhooks.create(db, project_id=project, url="http://hooks.test/b", events=["deploy"],
                                    secret=WEBHOOK_SECRET, actor="alice")  # fmt: skip
    elsewhere = await webhooks.create(db, project_id=other, url="http://hooks.test/c", events=[],
                                      secret=WEBHOOK_SECRET, actor="alice")  # fmt: skip
    gone = await webhooks.create(db, project_id=project, url="http://hooks.test/d", events=[],
                                 secret=WEBHOOK_SECRET, actor="alice")  # fmt: skip
    await webhooks.delete(db, gone.id)

    s = await new_deployment(db, project)
    await s.deploy()

    phases = {w.id: [d.phase for _, d in reversed((await webhooks.deliveries(db, w.id)).items)]
              for w in (every, deploys, elsewhere, gone)}  # fmt: skip
    assert phases == {every.id: ["create", "add_revision", "deploy"], deploys.id: ["deploy"], elsewhere.id: [],
                      gone.id: []}  # fmt: skip


async def test_a_receiver_that_fails_the_first_deliveries_still_gets_every_row_in_order_signed(
    db: Any, client: httpx.AsyncClient, loopback: Providers
) -> None:
    project = str(uuid.uuid4())
    receiver = Receiver(failures=3)
    async with serving(receiver.app()) as url:
        created = await data(client, CREATE_WEBHOOK, {"input": {"projectId": project, "url": f"{url}/hook",
                                                                "secret": WEBHOOK_SECRET}})  # fmt: skip
        webhook = created["createWebhook"]["webhook"]
        assert webhook == {"id": webhook["id"], "projectId": project, "url": f"{url}/hook", "events": [],
                           "createdBy": "anonymous"}  # fmt: skip

        # Given a rollout written by the API and by the scheduler (create, revisions, deploy, provision, promote)
        s = await new_deployment(db, project)
        await s.deploy()
        await run_once(db, providers=loopback)
        await s.report(RouteStatus.HEALTHY)
        await run_once(db, providers=loopback)
        await s.deploy()
        await run_once(db, providers=loopback)
        # When every retry is made due at once
        await deliver_all(db, loopback)

    written = await history_ids(db, s.id)
    assert len(written) >= 8
    # Then the first row was refused three times and held the others back; every row arrived once, in order
    assert [r.answered for r in receiver.requests[:4]] == [500, 500, 500, 200]
    assert len({r.delivery_id for r in receiver.requests[:4]}) == 1
    assert [r.payload["history"]["id"] for r in receiver.accepted()] == written
    assert receiver.first_seen_order() == written
    assert all(r.signed_with(WEBHOOK_SECRET) for r in receiver.requests)
    assert not any(r.signed_with("another-secret-of-16-bytes") for r in receiver.requests)
    first = receiver.accepted()[0].payload
    assert first["deliveryId"] == receiver.accepted()[0].delivery_id
    assert first["deployment"] == {"id": s.id, "name": "ranker"}
    assert first["projectId"] == project and first["webhookId"] == webhook["id"]
    assert {"phase", "fromLifecycle", "toLifecycle", "result", "message", "actor", "createdAt"} <= set(first["history"])

    # And the API shows the attempts of each delivery
    page = (await data(client, DELIVERIES, {"id": webhook["id"]}))["webhookDeliveries"]
    nodes = [e["node"] for e in page["edges"]]
    assert [n["historyId"] for n in reversed(nodes)] == written
    assert {n["status"] for n in nodes} == {"DELIVERED"}
    assert nodes[-1]["attempts"] == 4 and nodes[-1]["lastStatusCode"] == 200
    assert nodes[0]["attempts"] == 1


async def test_a_failing_delivery_holds_back_only_its_own_deployment(db: Any, loopback: Providers) -> None:
    project = str(uuid.uuid4())
    receiver = Receiver(refuse=lambda payload: payload["deployment"]["name"] == "broken")
    async with serving(receiver.app()) as url:
        await webhooks.create(db, project_id=project, url=f"{url}/hook", events=[], secret=WEBHOOK_SECRET,
                              actor="alice")  # fmt: skip
        broken = await new_deployment(db, project, "broken")
        fine = await new_deployment(db, project, "fine")
        for s in (broken, fine):
            await s.add_revision()
            await s.add_revision()
        for _ in range(3):
            await run_once(db, providers=loopback)
            await db.execute(DUE_NOW)

    sent = [(r.payload["deployment"]["name"], r.payload["history"]["phase"]) for r in receiver.requests]
    assert [p for name, p in sent if name == "fine"] == ["create", "add_revision", "add_revision"]
    assert {p for name, p in sent if name == "broken"} == {"create"}  # retried, the rows behind it wait


async def test_a_delivery_is_dead_lettered_after_the_limit_and_can_be_sent_again(
    db: Any, client: httpx.AsyncClient, loopback: Providers
) -> None:
    project = str(uuid.uuid4())
    receiver = Receiver(failures=sender.MAX_ATTEMPTS)
    async with serving(receiver.app()) as url:
        webhook = await webhooks.create(db, project_id=project, url=f"{url}/hook", events=["create", "scale"],
                                        secret=WEBHOOK_SECRET, actor="alice")  # fmt: skip
        s = await new_deployment(db, project)
        await deployments.scale(db, s.id, 2, actor="alice")
        await deliver_all(db, loopback)

        nodes = [e["node"] for e in (await data(client, DELIVERIES, {"id": webhook.id}))["webhookDeliveries"]["edges"]]
        assert [(n["phase"], n["status"], n["attempts"]) for n in nodes] == [
            ("scale", "DELIVERED", 1),
            ("create", "DEAD", sender.MAX_ATTEMPTS),
        ]
        dead = nodes[1]
        assert dead["lastError"] == "answered 500: no thanks" and dead["lastStatusCode"] == 500
        assert dead["nextAttemptAt"] is None and dead["deliveredAt"] is None
        # the dead one stopped holding the row behind it back
        assert [r.payload["history"]["phase"] for r in receiver.accepted()] == ["scale"]

        # A delivered one is not re-sent; a dead one is, with the same id
        assert error_code(await gql(client, REDELIVER, {"id": nodes[0]["id"]})) == "INVALID_STATE"
        again = (await data(client, REDELIVER, {"id": dead["id"]}))["redeliverWebhook"]["delivery"]
        assert again == {"id": dead["id"], "status": "PENDING", "attempts": 0}
        await run_once(db, providers=loopback)

    assert receiver.requests[-1].delivery_id == dead["id"] and receiver.requests[-1].answered == 200
    assert await statuses(db) == {"DELIVERED": 2}


async def test_a_scheduler_killed_mid_delivery_loses_nothing_and_resends_with_the_same_id(
    db: Any, database_url: str, tmp_path: Path
) -> None:
    project = str(uuid.uuid4())
    # The first two requests fail, the third is in flight when the scheduler is killed
    receiver = Receiver(failures=2, hold=3)
    log = tmp_path / "scheduler.log"
    async with serving(receiver.app()) as url:
        await webhooks.create(db, project_id=project, url=f"{url}/hook", events=[], secret=WEBHOOK_SECRET,
                              actor="alice")  # fmt: skip
        s = await new_deployment(db, project)
        for _ in range(3):
            await s.add_revision()

        scheduler = scheduler_process(database_url, log)
        try:
            await asyncio.wait_for(receiver.held.wait(), timeout=30)
            scheduler.send_signal(signal.SIGKILL)
            scheduler.wait(timeout=10)
        finally:
            if scheduler.poll() is None:
                scheduler.kill()
                scheduler.wait()
        receiver.release.set()
        killed_in_flight = receiver.requests[2]
        await db.execute(DUE_NOW)  # the dead scheduler's lease has ended

        # More history while no scheduler runs, then a new scheduler
        await deployments.scale(db, s.id, 2, actor="alice")
        scheduler = scheduler_process(database_url, log)
        try:

            async def all_delivered() -> bool:
                return await statuses(db) == {"DELIVERED": 5}

            await until(all_delivered, within=60)
        finally:
            scheduler.send_signal(signal.SIGTERM)
            assert scheduler.wait(timeout=15) == 0

    written = await history_ids(db, s.id)
    assert len(written) == 5
    assert receiver.first_seen_order() == written
    assert [r.payload["history"]["id"] for r in receiver.accepted()][-4:] == written[1:]
    again = [r for r in receiver.requests if r.delivery_id == killed_in_flight.delivery_id]
    assert len(again) >= 4 and {r.body for r in again} == {killed_in_flight.body}
    assert all(r.signed_with(WEBHOOK_SECRET) for r in receiver.requests)


async def test_a_receiver_that_never_answers_holds_up_no_rollout_of_the_scheduler_process(
    db: Any, database_url: str, tmp_path: Path
) -> None:
    # Given a receiver that never answers, with a delivery waiting for each of 8 deployments (each attempt waits out
    # the 5 s timeout; together, more than the scheduler's workers can post at once)
    project = str(uuid.uuid4())
    never = asyncio.Event()

    async def hang(request: Request) -> Response:
        await never.wait()
        return Response("too late")

    async with serving(Starlette(routes=[Route("/hook", hang, methods=["POST"])])) as url:
        await webhooks.create(db, project_id=project, url=f"{url}/hook", events=[], secret=WEBHOOK_SECRET,
                              actor="alice")  # fmt: skip
        for n in range(8):
            await new_deployment(db, project, name=f"stuck-{n}")
        scheduler = scheduler_process(database_url, tmp_path / "scheduler.log")
        try:
            # When a deployment is rolled out meanwhile
            s = await new_deployment(db, str(uuid.uuid4()))
            started = time.monotonic()
            await s.deploy()

            async def routes_created() -> bool:
                return bool(await s.live_routes())

            await until(routes_created, within=30)
            await s.healthy()

            async def ready() -> bool:
                return await s.state() == "READY"

            await until(ready, within=30)

            # Then it went through as if no webhook waited: well within one delivery attempt's timeout
            assert time.monotonic() - started < sender.TIMEOUT_SECONDS, await s.history()
        finally:
            never.set()
            scheduler.send_signal(signal.SIGTERM)
            assert scheduler.wait(timeout=15) == 0


def scheduler_process(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    """`switchover scheduler` as its own process, allowed to post to the loopback receiver."""
    env = {**os.environ, "DATABASE_URL": database_url, "SWITCHOVER_POLL_INTERVAL": "0.1",
           "SWITCHOVER_RUNTIME": "external", "SWITCHOVER_ALLOW_LOOPBACK_URLS": "true"}  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "switchover", "scheduler"], env=env, stdout=out, stderr=out)


# The API -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"events": ["deploy", "deploy-typo"]}, "events"),
        ({"secret": "too-short"}, "secret"),
        ({"url": "ftp://hooks.test/a"}, "url"),
        ({"url": "http://169.254.169.254/latest"}, "url"),
        ({"url": "https://user:secret@hooks.test/a"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"projectId": "nope"}, "projectId"),
    ],
)
async def test_bad_webhook_input_is_refused_naming_the_field_and_nothing_is_written(
    db: Any, client: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    given = {"projectId": str(uuid.uuid4()), "url": "https://hooks.test/a", "secret": WEBHOOK_SECRET, **change}
    body = await gql(client, CREATE_WEBHOOK, {"input": given})
    assert error_code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["message"].startswith(field)
    assert await db.fetch_val("SELECT count(*) FROM webhooks") == 0


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/hook", "http://127.9.9.9/hook", "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook",
     "http://localhost/hook", "https://LOCALHOST./hook", "http://api.localhost:8080/hook"],
)  # fmt: skip
def test_a_url_written_with_a_loopback_address_or_localhost_is_refused_unless_loopback_is_allowed(url: str) -> None:
    with pytest.raises(BadUserInput, match=r"^url points at the loopback .*\(SWITCHOVER_ALLOW_LOOPBACK_URLS is off\)$"):
        check_outbound_url(url, "url", allow_loopback=False)
    check_outbound_url(url, "url", allow_loopback=True)  # ::1 included: it is also "reserved", and still allowed


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest", "http://[fe80::1]/hook"])
def test_a_link_local_url_is_refused_even_when_loopback_is_allowed(url: str) -> None:
    with pytest.raises(BadUserInput, match="link-local"):
        check_outbound_url(url, "url", allow_loopback=True)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://[::1]:9/hook", "http://localhost:9/hook"])
async def test_a_loopback_webhook_url_is_refused_at_creation_when_the_setting_is_off_and_nothing_is_written(
    db: Any, database_url: str, url: str
) -> None:
    app = create_app(Settings(database_url=database_url, insecure=True, allow_loopback_urls=False), db)
    before = await snapshot(db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://switchover") as strict:
        body = await gql(strict, CREATE_WEBHOOK, {"input": {"projectId": str(uuid.uuid4()), "url": url,
                                                            "secret": WEBHOOK_SECRET}})  # fmt: skip
    assert error_code(body) == "BAD_USER_INPUT"
    assert body["errors"][0]["message"].startswith("url points at the loopback")
    assert await snapshot(db) == before


async def test_a_viewer_cannot_read_a_webhooks_url_or_deliveries_nor_manage_it(
    db: Any, secure: httpx.AsyncClient
) -> None:
    project = str(uuid.uuid4())
    operator, viewer = bearer("olga", ["operator"], [project]), bearer("victor", ["viewer"], [project])
    stranger = bearer("sam", ["operator"], [str(uuid.uuid4())])
    given = {"projectId": project, "url": "https://hooks.test/a", "secret": WEBHOOK_SECRET}

    async def ask(headers: dict[str, str], query: str, variables: dict[str, Any]) -> dict[str, Any]:
        response = await secure.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
        return response.json()

    assert error_code(await ask(viewer, CREATE_WEBHOOK, {"input": given})) == "FORBIDDEN"
    created = await ask(operator, CREATE_WEBHOOK, {"input": given})
    webhook_id = created["data"]["createWebhook"]["webhook"]["id"]
    assert "secret" not in json.dumps(created)
    await new_deployment(db, project)
    delivery_id = str((await webhooks.deliveries(db, webhook_id)).items[0][1].id)

    listing = "query($p: ID!) { webhooks(projectId: $p) { id url } }"
    for who, code in ((viewer, "FORBIDDEN"), (stranger, "NOT_FOUND")):
        assert error_code(await ask(who, DELIVERIES, {"id": webhook_id})) == code
        assert error_code(await ask(who, REDELIVER, {"id": delivery_id})) == code
        assert error_code(await ask(who, "mutation($id: ID!) { deleteWebhook(input: {id: $id}) { webhook { id } } }",
                                    {"id": webhook_id})) == code  # fmt: skip
    assert error_code(await ask(viewer, listing, {"p": project})) == "FORBIDDEN"

    assert (await ask(operator, listing, {"p": project}))["data"]["webhooks"] == [
        {"id": webhook_id, "url": "https://hooks.test/a"}
    ]
    page = await ask(operator, DELIVERIES, {"id": webhook_id})
    assert [e["node"]["phase"] for e in page["data"]["webhookDeliveries"]["edges"]] == ["create"]
    deleted = await ask(operator, "mutation($id: ID!) { deleteWebhook(input: {id: $id}) { webhook { id } } }",
                        {"id": webhook_id})  # fmt: skip
    assert deleted["data"]["deleteWebhook"]["webhook"]["id"] == webhook_id
    assert error_code(await ask(operator, DELIVERIES, {"id": webhook_id})) == "NOT_FOUND"
    assert await statuses(db) == {"DEAD": 1}  # what it still had to send says why it never will


async def test_a_loopback_receiver_is_refused_unless_the_setting_allows_it(db: Any) -> None:
    project = str(uuid.uuid4())
    receiver = Receiver()
    async with serving(receiver.app()) as url:
        webhook = await webhooks.create(db, project_id=project, url=f"{url}/hook", events=[], secret=WEBHOOK_SECRET,
                                        actor="alice")  # fmt: skip
        await new_deployment(db, project)
        await run_once(db)  # a client of its own: SWITCHOVER_ALLOW_LOOPBACK_URLS off

    assert receiver.requests == []
    delivery = (await webhooks.deliveries(db, webhook.id)).items[0][1]
    assert delivery.status is WebhookDeliveryStatus.PENDING and delivery.attempts == 1
    assert (
        delivery.last_error
        == "127.0.0.1 resolves to the loopback address 127.0.0.1 (SWITCHOVER_ALLOW_LOOPBACK_URLS is off)"
    )
