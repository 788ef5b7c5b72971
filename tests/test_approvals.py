"""Approvals (SPEC §8): a promotion, by hand or automatic, waits for `requiredApprovals` distinct people; an
approval is bound to the revision being deployed and to this rollout; approving twice counts once."""

from typing import Any

import httpx
import pytest

from store import deployments, governance, reads, rollouts
from store.errors import BadUserInput, InvalidState
from store.models import CanaryStep, Pause, Strategy
from tests import test_operate
from tests.graphql import data, post, refusal
from tests.scenario import Scenario, blue_green, canary
from tests.state import snapshot
from tests.tokens import bearer

APPROVE = """
mutation($d: ID!, $r: ID!, $c: String) {
  approvePromotion(input: {deploymentId: $d, revisionId: $r, comment: $c}) {
    approval { approver comment revision { number } }
    deployment { approvals { approver } }
  }
}
"""
PROMOTE = "mutation($d: ID!) { promoteDeployment(input: {deploymentId: $d}) { deployment { lifecycle } } }"
WAITING = """
query($d: ID!) {
  deployment(id: $d) { waitingFor { reason message } approvals { approver comment revision { number } } }
}
"""


async def approvals_table(db: Any) -> list[dict[str, Any]]:
    # Test-only read: approvals with their order, which a state snapshot does not keep.
    return [dict(row) for row in await db.fetch_all("SELECT * FROM approvals ORDER BY seq")]


async def awaiting_with_approvals(s: Scenario, required: int, **spec: Any) -> Scenario:
    """Revision 1 serving (deployed before approvals were required), then revision 2's green routes all HEALTHY,
    waiting for promotion under a strategy that requires `required` approvals."""
    await s.given_deployment(strategy=blue_green(**spec))
    await s.ready_on_first_revision()
    await deployments.change_strategy(s.db, s.id, blue_green(required_approvals=required, **spec), actor="alice")
    await s.deploy()
    await s.tick()
    await s.healthy(revision=2)
    await s.tick()
    assert await s.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION", await s.history()
    return s


def operator(sub: str, s: Scenario) -> dict[str, str]:
    return bearer(sub=sub, roles=["operator"], projects=[s.project_id])


async def test_auto_promotion_waits_for_the_required_approvals_and_each_approval_wakes_the_scheduler(
    scenario: Scenario, client: httpx.AsyncClient
) -> None:
    # Given an auto-promoting deployment that needs two approvals, awaiting promotion of revision 2
    await awaiting_with_approvals(scenario, 2, auto_promote=True)

    # When the scheduler looks, nothing is approved yet: it waits, and says for whom
    await scenario.tick()
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"
    seen = (await data(client, WAITING, {"d": scenario.id}))["deployment"]
    assert seen["waitingFor"]["reason"] == "APPROVALS"
    assert "0 of 2 approvals" in seen["waitingFor"]["message"]
    assert (await scenario.deployment()).next_check_at is None  # nothing to do until an approval arrives

    # When alice approves: the scheduler is woken, still waits for one more, and waitingFor names alice
    await governance.approve(scenario.db, scenario.id, scenario.revisions[1], actor="alice", comment="looks good")
    woken = await scenario.deployment()
    assert woken.next_check_at is not None and woken.next_check_at <= await reads.database_now(scenario.db)
    assert await scenario.tick() >= 1
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"
    seen = (await data(client, WAITING, {"d": scenario.id}))["deployment"]
    assert seen["waitingFor"]["reason"] == "APPROVALS"
    assert "1 of 2 approvals (alice)" in seen["waitingFor"]["message"]
    assert seen["approvals"] == [{"approver": "alice", "comment": "looks good", "revision": {"number": 2}}]

    # When bob approves too, the next pass promotes
    await governance.approve(scenario.db, scenario.id, scenario.revisions[1], actor="bob")
    await scenario.tick()

    # Then revision 2 serves, and history tells who approved, then the promotion
    assert await scenario.state() == "READY"
    assert await scenario.active_revisions() == [2, 2]
    assert (await scenario.history())[-3:] == [
        "approve SUCCESS",
        "approve SUCCESS",
        "promote SUCCESS AWAITING_PROMOTION -> READY",
    ]
    page = (await reads.history_pages(scenario.db, [scenario.id], first=3))[scenario.id]
    promoted, second, first = (h for _, h in page.items)
    assert (first.actor, second.actor, promoted.actor) == ("alice", "bob", "scheduler")
    assert first.message == 'alice approved revision 2 ("looks good"); 1 of 2 approvals (alice)'
    assert second.message == "bob approved revision 2; 2 of 2 approvals (alice, bob)"


async def test_two_approvals_from_the_same_sub_count_once_and_a_promotion_says_how_many_are_missing(
    scenario: Scenario, secure: httpx.AsyncClient, db: Any
) -> None:
    # Given a deployment that needs two approvals, awaiting promotion of revision 2
    await awaiting_with_approvals(scenario, 2)
    otto, olga = operator("otto", scenario), operator("olga", scenario)

    # When otto approves twice
    first = await post(secure, APPROVE, otto, d=scenario.id, r=scenario.revisions[1], c="first")
    again = await post(secure, APPROVE, otto, d=scenario.id, r=scenario.revisions[1], c="second")

    # Then his approval counts once: the first stands, and the second wrote nothing
    assert first["data"]["approvePromotion"]["approval"] == {
        "approver": "otto", "comment": "first", "revision": {"number": 2}
    }  # fmt: skip
    assert again["data"]["approvePromotion"]["approval"]["comment"] == "first"
    assert again["data"]["approvePromotion"]["deployment"]["approvals"] == [{"approver": "otto"}]
    assert len(await approvals_table(db)) == 1
    assert (await scenario.history()).count("approve SUCCESS") == 1

    # When otto promotes by hand, he is refused, told how many approvals are missing, and nothing changes
    before = await snapshot(db)
    code, message = refusal(await post(secure, PROMOTE, otto, d=scenario.id))
    assert code == "INVALID_STATE"
    assert "1 missing" in message and "1 of 2 approvals (otto)" in message
    assert await snapshot(db) == before

    # When olga approves, the promotion goes through
    await post(secure, APPROVE, olga, d=scenario.id, r=scenario.revisions[1])
    promoted = await post(secure, PROMOTE, otto, d=scenario.id)
    assert promoted["data"]["promoteDeployment"]["deployment"]["lifecycle"] == "READY", promoted


async def test_an_approval_for_an_older_revision_does_not_count(scenario: Scenario, secure: httpx.AsyncClient,
                                                                db: Any) -> None:  # fmt: skip
    # Given a deployment that needs one approval, awaiting promotion of revision 2
    await awaiting_with_approvals(scenario, 1)
    otto = operator("otto", scenario)

    # When otto approves revision 1 (serving, not the one being deployed), he is refused and nothing is written
    before = await snapshot(db)
    code, message = refusal(await post(secure, APPROVE, otto, d=scenario.id, r=scenario.revisions[0]))
    assert code == "INVALID_STATE" and "revision 1 is not the one" in message
    assert await snapshot(db) == before and await approvals_table(db) == []

    # When he approves revision 2, then the rollout is rolled back and revision 2 deployed again
    await post(secure, APPROVE, otto, d=scenario.id, r=scenario.revisions[1])
    await rollouts.begin_rollback(db, scenario.id, actor="otto", reason="one more fix")
    await scenario.tick()
    await scenario.finish_stopping()
    assert await scenario.state() == "READY"
    await scenario.deploy(scenario.revisions[1])
    await scenario.tick()
    await scenario.healthy(revision=2)
    await scenario.tick()

    # Then the approval of the earlier rollout of the same revision does not count for this one
    seen = (await data_as(secure, otto, scenario.id))["deployment"]
    assert seen["approvals"] == []
    assert seen["waitingFor"]["reason"] == "APPROVALS"
    code, message = refusal(await post(secure, PROMOTE, otto, d=scenario.id))
    assert code == "INVALID_STATE" and "1 missing" in message


async def data_as(client: httpx.AsyncClient, headers: dict[str, str], deployment_id: str) -> Any:
    body = await post(client, WAITING, headers, d=deployment_id)
    assert "errors" not in body, body
    return body["data"]


async def test_only_operators_of_the_project_and_admins_approve(scenario: Scenario, secure: httpx.AsyncClient,
                                                                db: Any) -> None:  # fmt: skip
    # Given a deployment that needs one approval, awaiting promotion of revision 2
    await awaiting_with_approvals(scenario, 1)
    viewer = bearer(sub="val", roles=["viewer"], projects=[scenario.project_id])
    stranger = bearer(sub="sam", roles=["operator"], projects=["6f1c2a7e-0d4b-4f7e-9a51-3c0e8d2b9a10"])
    admin = bearer(sub="ada", roles=["admin"])

    # When a viewer of the project and an operator of another project approve, they are refused and nothing is written
    before = await snapshot(db)
    assert refusal(await post(secure, APPROVE, viewer, d=scenario.id, r=scenario.revisions[1]))[0] == "FORBIDDEN"
    assert refusal(await post(secure, APPROVE, stranger, d=scenario.id, r=scenario.revisions[1]))[0] == "NOT_FOUND"
    assert await snapshot(db) == before and await approvals_table(db) == []

    # When an admin approves, it counts
    body = await post(secure, APPROVE, admin, d=scenario.id, r=scenario.revisions[1])
    assert body["data"]["approvePromotion"]["deployment"]["approvals"] == [{"approver": "ada"}], body


async def test_a_first_deploy_waits_for_its_approvals_too(scenario: Scenario) -> None:
    # Given a new deployment that needs one approval, its first revision's routes all HEALTHY
    await scenario.given_deployment(strategy=blue_green(required_approvals=1))
    await scenario.deploy()
    await scenario.tick()
    await scenario.healthy(revision=1)
    await scenario.tick()

    # Then it is not promoted at once, as a first deploy would be
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"

    # When someone approves, the next pass promotes it
    await governance.approve(scenario.db, scenario.id, scenario.revisions[0], actor="alice")
    await scenario.tick()
    assert await scenario.state() == "READY"


async def test_a_canary_pause_without_seconds_ends_only_with_enough_approvals(scenario: Scenario) -> None:
    # Given a canary that needs one approval, paused at 50 % until a person promotes it
    steps = (CanaryStep(set_weight=50), CanaryStep(pause=Pause(None)), CanaryStep(set_weight=100))
    await scenario.given_deployment(strategy=canary(*steps))
    await scenario.ready_on_first_revision()
    strategy = canary(*steps)
    strategy = Strategy(strategy.type, canary_spec=type(strategy.canary_spec)(steps, required_approvals=1))
    await deployments.change_strategy(scenario.db, scenario.id, strategy, actor="alice")
    await scenario.deploy()
    await scenario.tick()
    await scenario.healthy(revision=2)
    await scenario.tick()
    await scenario.tick()
    assert await scenario.state() == "DEPLOYING/DEPLOYING_AWAITING_PROMOTION", await scenario.history()

    # When it is promoted without approval, it is refused
    with pytest.raises(InvalidState, match="1 missing"):
        await rollouts.promote(scenario.db, scenario.id, actor="alice")

    # When alice approves, the promotion ends the pause
    await governance.approve(scenario.db, scenario.id, scenario.revisions[1], actor="alice")
    await rollouts.promote(scenario.db, scenario.id, actor="alice")
    assert await scenario.state() == "DEPLOYING/DEPLOYING_PROGRESSING"


@pytest.mark.parametrize("required", [-1, 11])
async def test_required_approvals_out_of_bounds_are_refused_naming_the_field(db: Any, required: int) -> None:
    with pytest.raises(BadUserInput, match=r"strategy\.blueGreen\.requiredApprovals"):
        await deployments.create_deployment(
            db,
            project_id="6f1c2a7e-0d4b-4f7e-9a51-3c0e8d2b9a10",
            name="model",
            replicas=1,
            strategy=blue_green(required_approvals=required),
            actor="alice",
        )
    assert (await snapshot(db))["deployments"] == []


async def test_required_approvals_are_set_and_read_through_the_api(client: httpx.AsyncClient) -> None:
    created = await data(
        client,
        """mutation { createDeployment(input: {projectId: "6f1c2a7e-0d4b-4f7e-9a51-3c0e8d2b9a10", name: "ranker",
           replicas: 1, strategy: {type: BLUE_GREEN, blueGreen: {requiredApprovals: 2}}})
           { deployment { strategy { blueGreen { requiredApprovals } } approvals { approver } } } }""",
    )
    deployment = created["createDeployment"]["deployment"]
    assert deployment == {"strategy": {"blueGreen": {"requiredApprovals": 2}}, "approvals": []}


api = test_operate.api  # the server the command line talks to (a fixture)


async def test_approve_from_the_command_line_and_status_shows_who_approved(scenario: Scenario, api: str) -> None:
    # Given a deployment that needs two approvals, awaiting promotion of revision 2
    await awaiting_with_approvals(scenario, 2)
    name = (await scenario.deployment()).name

    # When someone approves revision 1 from the command line, the server refuses it (exit code 1)
    code, out = await test_operate.switchover("approve", name, "--revision", "1", url=api)
    assert code == 1 and "INVALID_STATE" in out, out

    # When they approve the revision being deployed
    code, out = await test_operate.switchover("approve", name, "--comment", "ship it", url=api)
    assert (code, out.strip()) == (0, f"anonymous approved revision 2 of {name}; approvals so far: anonymous"), out

    # Then status shows the approvals and why the rollout still waits
    code, out = await test_operate.switchover("status", name, url=api)
    assert code == 0 and "approvals: 1 of 2: anonymous (ship it)" in out, out
    assert "promotion waits for 1 more" in out


async def test_a_canarys_required_approvals_are_set_and_read_through_the_api(client: httpx.AsyncClient) -> None:
    created = await data(
        client,
        """mutation { createDeployment(input: {projectId: "6f1c2a7e-0d4b-4f7e-9a51-3c0e8d2b9a10", name: "ranker",
           replicas: 1, strategy: {type: CANARY, canary: {requiredApprovals: 2,
           steps: [{setWeight: 50}, {pause: {}}, {setWeight: 100}]}}})
           { deployment { strategy { canary { requiredApprovals } } } } }""",
    )
    assert created["createDeployment"]["deployment"] == {"strategy": {"canary": {"requiredApprovals": 2}}}
