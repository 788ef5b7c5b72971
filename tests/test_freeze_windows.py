"""Freeze windows (SPEC §8): while one is in force (database clock), deploys and promotions are refused with
`FROZEN` and auto-promotion waits for its end, unless an admin breaks the glass for one operation (history says who
and why); rollbacks and reverts are never frozen; only operators and admins of the project manage windows."""

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from store import deployments, governance, reads, rollouts
from store.errors import Frozen
from store.models import CanaryStep, Pause
from switchover.app import create_app
from switchover.settings import Settings
from tests import test_dashboard, test_operate
from tests.graphql import data, post, refusal
from tests.live_server import serving
from tests.scenario import Scenario, blue_green, canary
from tests.state import snapshot
from tests.tokens import bearer

CREATE = """
mutation($p: ID!, $s: DateTime!, $e: DateTime!, $why: String!) {
  createFreezeWindow(input: {projectId: $p, startsAt: $s, endsAt: $e, reason: $why}) {
    freezeWindow { id projectId startsAt endsAt reason createdBy }
  }
}
"""
DELETE = "mutation($id: ID!) { deleteFreezeWindow(input: {id: $id}) { freezeWindow { id } } }"
DEPLOY = """
mutation($d: ID!, $r: ID!, $glass: BreakGlassInput) {
  deployRevision(input: {deploymentId: $d, revisionId: $r, breakGlass: $glass}) { deployment { lifecycle } }
}
"""
PROMOTE = """
mutation($d: ID!, $glass: BreakGlassInput) {
  promoteDeployment(input: {deploymentId: $d, breakGlass: $glass}) { deployment { lifecycle } }
}
"""
STATUS = """
query($d: ID!) {
  deployment(id: $d) { waitingFor { reason message } activeFreezeWindow { id reason endsAt } }
}
"""
PROJECT = """
query($r: [_Any!]!) { _entities(representations: $r) { ... on Project { freezeWindows { id reason } } } }
"""
# Test-only SQL: moves freeze windows back in time, as scenario.shift_time does for a deployment's own timestamps.
SHIFT_WINDOWS = """UPDATE freeze_windows SET starts_at = starts_at - make_interval(secs => :seconds),
                   ends_at = ends_at - make_interval(secs => :seconds)"""


def ok(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    return body["data"]


async def windows_table(db: Any) -> list[dict[str, Any]]:
    # Test-only read: tests/state.py does not know the governance tables.
    return [dict(row) for row in await db.fetch_all("SELECT * FROM freeze_windows ORDER BY seq")]


async def freeze(db: Any, project_id: str, *, minutes: float = 60, started: float = 1, reason: str = "launch") -> str:
    """A window of the project in force now (database clock): it started `started` minutes ago."""
    now = await reads.database_now(db)
    window = await governance.create_freeze_window(
        db,
        project_id=project_id,
        starts_at=now - timedelta(minutes=started),
        ends_at=now + timedelta(minutes=minutes),
        reason=reason,
        actor="olga",
    )
    return window.id


def operator(s: Scenario, sub: str = "otto") -> dict[str, str]:
    return bearer(sub=sub, roles=["operator"], projects=[s.project_id])


ADMIN = bearer(sub="ada", roles=["admin"])


async def test_a_freeze_refuses_a_deploy_and_an_admin_breaking_the_glass_passes_with_history(
    scenario: Scenario, secure: httpx.AsyncClient, db: Any
) -> None:
    # Given a READY deployment whose project is frozen, and a new revision
    await scenario.given_deployment()
    await scenario.ready_on_first_revision()
    revision = await scenario.add_revision()
    await freeze(db, scenario.project_id, reason="black friday")

    # When an operator deploys, with or without breaking the glass, it is refused and nothing is written
    before = await snapshot(db)
    code, message = refusal(await post(secure, DEPLOY, operator(scenario), d=scenario.id, r=revision))
    assert code == "FROZEN" and "black friday" in message and "breakGlass" in message
    glass = {"reason": "security fix CVE-1"}
    code, _ = refusal(await post(secure, DEPLOY, operator(scenario), d=scenario.id, r=revision, glass=glass))
    assert code == "FORBIDDEN"
    assert await snapshot(db) == before

    # When an admin breaks the glass
    deployed = ok(await post(secure, DEPLOY, ADMIN, d=scenario.id, r=revision, glass=glass))

    # Then the deploy goes through, and history says who broke the glass of which window, and why
    assert deployed["deployRevision"]["deployment"]["lifecycle"] == "DEPLOYING"
    assert (await scenario.history())[-2:] == ["break_glass SUCCESS", "deploy SUCCESS READY -> PROVISIONING"]
    page = (await reads.history_pages(db, [scenario.id], first=2))[scenario.id]
    _, broke = page.items[1]
    assert broke.actor == "ada"
    assert "black friday" in broke.message and "security fix CVE-1" in broke.message

    # And it covered that one operation only: the promotion that follows is frozen again
    await scenario.tick()
    await scenario.healthy(revision=2)
    await scenario.tick()
    code, _ = refusal(await post(secure, PROMOTE, operator(scenario), d=scenario.id))
    assert code == "FROZEN"
    promoted = ok(await post(secure, PROMOTE, ADMIN, d=scenario.id, glass={"reason": "finish the fix"}))
    assert promoted["promoteDeployment"]["deployment"]["lifecycle"] == "READY"
    assert (await scenario.history())[-2:] == ["break_glass SUCCESS", "promote SUCCESS AWAITING_PROMOTION -> READY"]


async def test_auto_promotion_is_held_during_a_freeze_and_happens_when_it_ends(
    scenario: Scenario, db: Any, secure: httpx.AsyncClient
) -> None:
    # Given an auto-promoting deployment awaiting promotion of revision 2, and its project frozen for an hour
    await scenario.given_deployment(strategy=blue_green(auto_promote=True, promote_delay_seconds=60))
    await scenario.ready_on_first_revision()
    await scenario.deploy()
    await scenario.tick()
    await scenario.healthy(revision=2)
    await scenario.tick()
    window = await freeze(db, scenario.project_id, minutes=60)

    # When the auto-promotion delay has passed, the scheduler holds the promotion until the window's end
    await scenario.shift_time(61)
    await scenario.tick()
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"
    [held] = await windows_table(db)
    assert (await scenario.deployment()).next_check_at == held["ends_at"]
    status = ok(await post(secure, STATUS, operator(scenario), d=scenario.id))["deployment"]
    assert status["waitingFor"]["reason"] == "FREEZE_WINDOW"
    assert status["activeFreezeWindow"]["id"] == window and status["activeFreezeWindow"]["reason"] == "launch"

    # When the window has ended (time moved by shifting the stored timestamps), the next pass promotes
    await db.execute(SHIFT_WINDOWS, {"seconds": 3600.0})
    await scenario.shift_time(3600)
    await scenario.tick()
    assert await scenario.state() == "READY"
    assert ok(await post(secure, STATUS, operator(scenario), d=scenario.id))["deployment"]["activeFreezeWindow"] is None


async def test_deleting_a_window_wakes_the_rollouts_it_held(scenario: Scenario, db: Any,
                                                            secure: httpx.AsyncClient) -> None:  # fmt: skip
    # Given a first deploy, started before the freeze, whose promotion the freeze holds for a day
    await scenario.given_deployment()
    await scenario.deploy()
    await scenario.tick()
    window = await freeze(db, scenario.project_id, minutes=24 * 60)
    await scenario.healthy(revision=1)
    await scenario.tick()
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"
    [held] = await windows_table(db)
    assert (await scenario.deployment()).next_check_at == held["ends_at"]

    # When an operator deletes the window
    ok(await post(secure, DELETE, operator(scenario), id=window))

    # Then the scheduler looks again at once, and promotes
    woken = await scenario.deployment()
    assert woken.next_check_at is not None and woken.next_check_at <= await reads.database_now(db)
    await scenario.tick()
    assert await scenario.state() == "READY"


async def test_a_canary_holds_its_weight_during_a_freeze_and_steps_on_when_it_ends(
    scenario: Scenario, db: Any, client: httpx.AsyncClient
) -> None:
    # Given a canary of revision 2 at 50 %, in a pause of a minute
    steps = (CanaryStep(set_weight=50), CanaryStep(pause=Pause(60)), CanaryStep(set_weight=100))
    await scenario.given_deployment(strategy=canary(*steps))
    await scenario.ready_on_first_revision()
    await scenario.deploy()
    for _ in range(3):
        await scenario.tick()
        await scenario.healthy(revision=2)
    deployment = await scenario.deployment()
    assert (deployment.canary_step_index, deployment.canary_weight) == (1, 50), await scenario.history()

    # When its project is frozen and the pause is over, the canary stays at 50 %, and says why
    await freeze(db, scenario.project_id)
    await scenario.shift_time(61)
    await scenario.tick()
    deployment = await scenario.deployment()
    assert (deployment.canary_step_index, deployment.canary_weight) == (1, 50)
    seen = (await data(client, STATUS, {"d": scenario.id}))["deployment"]
    assert seen["waitingFor"]["reason"] == "FREEZE_WINDOW" and "held at 50 %" in seen["waitingFor"]["message"]

    # When the window has ended, it steps on to 100 %
    await db.execute(SHIFT_WINDOWS, {"seconds": 3600.0})
    await scenario.shift_time(3600)
    await scenario.tick()
    await scenario.healthy(revision=2)
    await scenario.tick()
    assert await scenario.state() == "READY", await scenario.history()


async def test_rollbacks_and_reverts_are_never_frozen(scenario: Scenario, db: Any) -> None:
    # Given revision 2 awaiting promotion, promoted, then revision 3 awaiting promotion
    await scenario.given_deployment(strategy=blue_green(scale_down_delay_seconds=600))
    await scenario.awaiting_promotion_of_revision_2()
    await rollouts.promote(db, scenario.id, actor="alice")
    await freeze(db, scenario.project_id)

    # When the project is frozen, the promotion can still be reverted
    await rollouts.revert_promotion(db, scenario.id, actor="alice", reason="bad answers")
    assert (await scenario.deployment()).current_revision_id == scenario.revisions[0]

    # And a rollout started by breaking the glass can still be rolled back by anyone
    with pytest.raises(Frozen):
        await scenario.deploy()
    await rollouts.deploy_revision(db, scenario.id, scenario.revisions[2], actor="ada", break_glass="hotfix")
    await rollouts.begin_rollback(db, scenario.id, actor="alice", reason="not now")
    await scenario.tick()
    assert await scenario.state() == "READY"


async def test_windows_are_checked_and_refused_with_the_field_named(secure: httpx.AsyncClient, db: Any) -> None:
    project = "6f1c2a7e-0d4b-4f7e-9a51-3c0e8d2b9a10"
    now = await reads.database_now(db)
    hour = timedelta(hours=1)
    cases: list[tuple[datetime, datetime, str, str]] = [
        (now + hour, now + hour, "launch", "endsAt"),
        (now + 2 * hour, now + hour, "launch", "endsAt"),
        (now, now + timedelta(days=30, seconds=1), "launch", "at most 30 days"),
        (now - 2 * hour, now - hour, "launch", "already passed"),
        (now, now + hour, "   ", "reason"),
        (now, now + hour, "a\x00b", "control characters"),
        (now + timedelta(days=400), now + timedelta(days=401), "launch", "366 days ahead"),
    ]
    for starts, ends, why, said in cases:
        body = await post(secure, CREATE, ADMIN, p=project, s=starts.isoformat(), e=ends.isoformat(), why=why)
        code, message = refusal(body)
        assert (code, said in message) == ("BAD_USER_INPUT", True), (starts, ends, message)
    for starts, ends in (("9999-12-31T00:00:00-14:00", "9999-12-31T23:59:59-14:00"),
                         ("0001-01-01T00:00:00+14:00", "0001-01-02T00:00:00+14:00"), ("yesterday", "tomorrow")):
        code, _ = refusal(await post(secure, CREATE, ADMIN, p=project, s=starts, e=ends, why="edge"))
        assert code == "BAD_USER_INPUT", (starts, ends)
    assert await windows_table(db) == []

    # A window of exactly 30 days, starting in the past, is fine
    body = await post(secure, CREATE, ADMIN, p=project, s=(now - hour).isoformat(),
                      e=(now - hour + timedelta(days=30)).isoformat(), why="quarter end")  # fmt: skip
    assert ok(body)["createFreezeWindow"]["freezeWindow"]["createdBy"] == "ada"


async def test_only_operators_and_admins_of_the_project_manage_its_windows(secure: httpx.AsyncClient, db: Any) -> None:
    mine, theirs = "6f1c2a7e-0d4b-4f7e-9a51-3c0e8d2b9a10", "0b7d5f8e-3c2a-4e1b-9f6d-2a8c4e6b1d3f"
    now = await reads.database_now(db)
    window = {"s": now.isoformat(), "e": (now + timedelta(hours=1)).isoformat(), "why": "launch"}
    viewer = bearer(sub="val", roles=["viewer"], projects=[mine])
    otto = bearer(sub="otto", roles=["operator"], projects=[mine])
    sam = bearer(sub="sam", roles=["operator"], projects=[theirs])

    # A viewer, and an operator of another project, may not create one
    assert refusal(await post(secure, CREATE, viewer, p=mine, **window))[0] == "FORBIDDEN"
    assert refusal(await post(secure, CREATE, sam, p=mine, **window))[0] == "FORBIDDEN"
    assert await windows_table(db) == []

    # An operator of the project may; a viewer reads it through the Project entity, but may not delete it
    created = ok(await post(secure, CREATE, otto, p=mine, **window))["createFreezeWindow"]["freezeWindow"]
    seen = ok(await post(secure, PROJECT, viewer, r=[{"__typename": "Project", "id": mine}]))
    assert seen["_entities"] == [{"freezeWindows": [{"id": created["id"], "reason": "launch"}]}]
    assert refusal(await post(secure, DELETE, viewer, id=created["id"]))[0] == "FORBIDDEN"
    assert refusal(await post(secure, DELETE, sam, id=created["id"]))[0] == "NOT_FOUND"
    assert [w["deleted_at"] for w in await windows_table(db)] == [None]

    # The operator deletes it: it is kept, marked, and no longer listed
    assert ok(await post(secure, DELETE, otto, id=created["id"]))["deleteFreezeWindow"]["freezeWindow"]["id"]
    [kept] = await windows_table(db)
    assert kept["deleted_by"] == "otto"
    seen = ok(await post(secure, PROJECT, viewer, r=[{"__typename": "Project", "id": mine}]))
    assert seen["_entities"] == [{"freezeWindows": []}]
    assert refusal(await post(secure, DELETE, otto, id=created["id"]))[0] == "NOT_FOUND"


async def test_a_window_of_another_project_freezes_nothing_here(scenario: Scenario, db: Any) -> None:
    await scenario.given_deployment()
    await freeze(db, "6f1c2a7e-0d4b-4f7e-9a51-3c0e8d2b9a10")
    await scenario.ready_on_first_revision()
    await deployments.scale(db, scenario.id, 3, actor="alice")  # not frozen either: only deploys and promotions
    assert await scenario.state() == "READY"


api = test_operate.api  # the server the command line talks to (a fixture)


async def test_freeze_and_unfreeze_from_the_command_line_and_status_shows_the_freeze(scenario: Scenario,
                                                                                    api: str) -> None:  # fmt: skip
    # Given a READY deployment
    await scenario.given_deployment()
    await scenario.ready_on_first_revision()
    name = (await scenario.deployment()).name

    # When its project is frozen for two hours from the command line
    code, out = await test_operate.switchover("freeze", name, "--for", "2h", "--reason", "year end", url=api)
    assert code == 0 and f"froze project {scenario.project_id}" in out, out
    window = out.strip().rsplit(" ", 1)[-1]

    # Then status shows the freeze, and a deploy is refused with FROZEN (exit code 1)
    code, out = await test_operate.switchover("status", name, url=api)
    assert "frozen until" in out and "year end" in out and window in out, out
    code, out = await test_operate.switchover("deploy", name, "--image", "model:2", url=api)
    assert code == 1 and "FROZEN" in out, out

    # When it is unfrozen, the deploy goes through
    code, out = await test_operate.switchover("unfreeze", window, url=api)
    assert code == 0 and f"deleted freeze window {window}" in out, out
    code, out = await test_operate.switchover("deploy", name, "--image", "model:3", url=api)
    assert code == 0, out

    # A freeze longer than 30 days is refused by the server; a duration it cannot read is bad usage
    code, out = await test_operate.switchover("freeze", name, "--for", "31d", "--reason", "too long", url=api)
    assert code == 1 and "BAD_USER_INPUT" in out, out
    code, out = await test_operate.switchover("freeze", name, "--for", "soon", "--reason", "what", url=api)
    assert code == 2, out


browser, page = test_dashboard.browser, test_dashboard.page  # headless Chromium (fixtures)


async def test_the_dashboard_shows_approvals_and_a_freeze_live(scenario: Scenario, db: Any, settings: Settings,
                                                                page: test_dashboard.Page) -> None:  # fmt: skip
    # Given revision 2 awaiting promotion under a strategy that needs two approvals, one given by alice
    await scenario.given_deployment(strategy=blue_green())
    await scenario.ready_on_first_revision()
    await deployments.change_strategy(db, scenario.id, blue_green(required_approvals=2), actor="alice")
    await scenario.deploy()
    await scenario.tick()
    await scenario.healthy(revision=2)
    await scenario.tick()
    await governance.approve(db, scenario.id, scenario.revisions[1], actor="alice", comment="eval ok")

    async with serving(create_app(settings, db)) as url:
        # Then the page shows who approved, why the rollout waits, and a promote button that says why it is off
        await page.open(url + f"/#/d/{scenario.id}")
        await page.shows("the approvals", "#d-approvals", "1 of 2", "alice", "eval ok")
        await page.shows("why it waits", "#d-waiting", "APPROVALS")
        await page.shows("no freeze", "#d-freeze", "none in force")
        assert not await page.on("#act-promote", lambda e: e.is_enabled())
        assert "1 more" in await page.text("#why-promote")

        # When the project is frozen and bob approves, the page follows live (the approval is an event: a freeze,
        # which belongs to no deployment, is not)
        await freeze(db, scenario.project_id, reason="year end")
        await governance.approve(db, scenario.id, scenario.revisions[1], actor="bob")
        await page.shows("both approvals", "#d-approvals", "2 of 2", "alice", "bob")
        await page.shows("the freeze", "#d-freeze", "frozen until", "year end")
        await page.shows("why it waits now", "#d-waiting", "FREEZE_WINDOW")
        await page.screenshot("governance")
