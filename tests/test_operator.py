"""Operator experience: instant revert, why a rollout waits, and live events over graphql-transport-ws."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from store import events, rollouts
from store.errors import InvalidState
from store.models import RouteStatus
from switchover.app import create_app
from switchover.settings import Settings
from tests.graphql import data
from tests.live_server import serving
from tests.scenario import Scenario, blue_green
from tests.state import snapshot
from tests.tokens import SECRET, token


async def promoted(scenario: Scenario, **spec: Any) -> None:
    await scenario.given_deployment(replicas=2, strategy=blue_green(**spec))
    await scenario.awaiting_promotion_of_revision_2()
    await rollouts.promote(scenario.db, scenario.id, actor="alice")


REVERT = """mutation($d: ID!) {
  revertPromotion(input: {deploymentId: $d, reason: "errors up"}) { deployment { currentRevision { number } } }
}"""


async def test_a_promotion_reverts_instantly_while_the_old_routes_are_warm(scenario: Scenario, client: Any) -> None:
    await promoted(scenario, scale_down_delay_seconds=60)

    result = await data(client, REVERT, {"d": scenario.id})

    assert result["revertPromotion"]["deployment"]["currentRevision"] == {"number": 1}
    assert await scenario.active_revisions() == [1, 1]
    assert [r.status for r in await scenario.live_routes(revision=2)] == [RouteStatus.HEALTHY] * 2  # warm in turn
    assert (await scenario.history())[-1] == "revert SUCCESS"

    await rollouts.revert_promotion(scenario.db, scenario.id, actor="alice")  # and the revert reverts
    assert await scenario.active_revisions() == [2, 2]


async def test_a_revert_is_refused_once_the_old_routes_are_gone(scenario: Scenario, db: Any) -> None:
    await promoted(scenario, scale_down_delay_seconds=30)
    await scenario.shift_time(30)
    await scenario.tick()  # the blue routes drain
    before = await snapshot(db)

    with pytest.raises(InvalidState, match="scale-down delay has passed"):
        await rollouts.revert_promotion(db, scenario.id, actor="alice")

    assert await snapshot(db) == before


WAITING = "query($d: ID!) { deployment(id: $d) { waitingFor { reason message } } }"


async def test_waiting_for_says_why_a_rollout_has_not_moved(scenario: Scenario, client: Any) -> None:
    await scenario.given_deployment(replicas=3, strategy=blue_green(promotion_timeout_seconds=600))
    await scenario.ready_on_first_revision()
    assert (await data(client, WAITING, {"d": scenario.id}))["deployment"]["waitingFor"] is None

    await scenario.deploy()
    await scenario.tick()
    await scenario.healthy(revision=2, count=2)
    await scenario.report(RouteStatus.UNHEALTHY, revision=2, count=1, among=RouteStatus.PROVISIONING)
    waiting = (await data(client, WAITING, {"d": scenario.id}))["deployment"]["waitingFor"]
    assert waiting["reason"] == "ROUTES_NOT_HEALTHY"
    assert waiting["message"].startswith("2 of 3 green routes healthy; route ")
    assert "UNHEALTHY since" in waiting["message"]

    await scenario.tick()  # the unhealthy one is replaced
    await scenario.healthy(revision=2)
    await scenario.tick()
    waiting = (await data(client, WAITING, {"d": scenario.id}))["deployment"]["waitingFor"]
    assert waiting["reason"] == "MANUAL_PROMOTION"
    assert "times out at" in waiting["message"]


class Subscriber:
    """A graphql-transport-ws client."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def next(self) -> dict[str, Any]:
        while True:
            message = json.loads(await asyncio.wait_for(self.connection.recv(), 10))
            if message["type"] in ("next", "error"):
                return message


def refusal(message: dict[str, Any]) -> str:
    """The code of a subscription refused at its start ("error", or "next" carrying errors)."""
    payload = message["payload"]
    errors = payload if isinstance(payload, list) else payload["errors"]
    return errors[0]["extensions"]["code"]


EVENTS = """subscription($d: ID, $after: ID) { deploymentEvents(deploymentId: $d, after: $after) {
  id deploymentId history { phase result toLifecycle actor } deployment { lifecycle } } }"""


async def subscribe(
    url: str, variables: dict[str, Any], init: dict[str, Any] | None = None
) -> AsyncIterator[Subscriber]:
    async with websockets.connect(url.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": init or {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": EVENTS, "variables": variables}})
        )
        yield Subscriber(ws)


async def test_events_stream_live_and_resume_after_the_last_one_seen(
    scenario: Scenario, db: Any, settings: Any
) -> None:
    await scenario.given_deployment(replicas=1)
    async with serving(create_app(settings, db)) as url:
        seen = []
        async for sub in subscribe(url, {"d": scenario.id}):
            assert (await sub.next())["payload"]["data"]["deploymentEvents"]["history"]["phase"] == "create"
            await scenario.deploy()  # add_revision, then deploy
            for _ in range(2):
                seen.append((await sub.next())["payload"]["data"]["deploymentEvents"])
        assert [e["history"]["phase"] for e in seen] == ["add_revision", "deploy"]
        assert seen[1]["deployment"] == {"lifecycle": "DEPLOYING"}

        await scenario.tick()  # happens while nobody listens
        async for sub in subscribe(url, {"d": scenario.id, "after": seen[1]["id"]}):
            missed = (await sub.next())["payload"]["data"]["deploymentEvents"]
            assert (missed["history"]["phase"], missed["history"]["actor"]) == ("provision", "scheduler")


async def test_events_need_a_token_when_the_server_requires_one(scenario: Scenario, db: Any, database_url: str) -> None:
    await scenario.given_deployment(replicas=1)
    app = create_app(Settings(database_url=database_url, jwt_secret=SECRET), db)
    async with serving(app) as url:
        async for sub in subscribe(url, {"d": scenario.id}):
            assert refusal(await sub.next()) == "UNAUTHENTICATED"
        # A deployment the caller may not read answers as one that does not exist, whatever the token lists.
        for roles, projects in (["viewer"], []), ([], [scenario.project_id]):
            stranger = {"authorization": f"Bearer {token(sub='sam', roles=roles, projects=projects)}"}
            async for sub in subscribe(url, {"d": scenario.id}, init=stranger):
                assert refusal(await sub.next()) == "NOT_FOUND"
        admin = {"authorization": f"Bearer {token(roles=['admin'])}"}
        async for sub in subscribe(url, {"d": scenario.id}, init=admin):
            assert (await sub.next())["payload"]["data"]["deploymentEvents"]["history"]["phase"] == "create"


async def test_a_token_without_a_role_receives_no_events_of_the_projects_it_lists(
    scenario: Scenario, db: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await scenario.given_deployment(replicas=1)
    asked: list[dict[str, Any]] = []
    real_events = events.events

    def watched(*args: Any, **filters: Any) -> Any:  # the real stream, its filters noted
        asked.append(filters)
        return real_events(*args, **filters)

    monkeypatch.setattr(events, "events", watched)
    app = create_app(Settings(database_url=database_url, jwt_secret=SECRET), db)
    roleless = {"authorization": f"Bearer {token(sub='nora', roles=[], projects=[scenario.project_id])}"}
    async with serving(app) as url:
        async for _ in subscribe(url, {}, init=roleless):
            deadline = time.monotonic() + 10
            while not asked:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)

    assert asked[0]["project_ids"] == []  # the same rule as queries: no role, no project


async def test_resuming_after_an_event_of_another_project_answers_as_an_unknown_event(
    scenario: Scenario, db: Any, database_url: str
) -> None:
    await scenario.given_deployment(replicas=1)
    theirs = Scenario(db)
    await theirs.given_deployment(replicas=1)
    [their_event] = [row[0] for row in await db.fetch_all(
        "SELECT id::text FROM deployment_history WHERE deployment_id = :d", {"d": theirs.id}
    )]  # fmt: skip
    unknown = str(uuid.uuid4())
    viewer = {"authorization": f"Bearer {token(sub='val', roles=['viewer'], projects=[scenario.project_id])}"}
    app = create_app(Settings(database_url=database_url, jwt_secret=SECRET), db)
    answers = []
    async with serving(app) as url:
        for after in (their_event, unknown):
            async for sub in subscribe(url, {"after": after}, init=viewer):
                answers.append(json.dumps((await sub.next())["payload"]).replace(after, "ID"))

    assert answers[0] == answers[1] and "BAD_USER_INPUT" in answers[0]
