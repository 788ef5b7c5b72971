"""`nextActionAt` is when the scheduler looks at a waiting deployment again: both come from scheduler/deadlines.py."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from scheduler import deadlines
from store.models import IntOrPercent
from tests.scenario import Scenario, blue_green, rolling


async def provisioning(s: Scenario) -> None:
    await s.deploy()
    await s.tick()


async def awaiting(s: Scenario) -> None:
    await s.deploy()
    await s.tick()
    await s.healthy(revision=2)
    await s.tick()


@pytest.mark.parametrize(
    ("strategy", "reach", "state"),
    [
        (blue_green(provisioning_timeout_seconds=120), provisioning, "DEPLOYING/DEPLOYING_PROVISIONING"),
        (rolling(IntOrPercent(count=1), IntOrPercent(count=0)), provisioning, "DEPLOYING/DEPLOYING_PROVISIONING"),
        (blue_green(auto_promote=True, promote_delay_seconds=90), awaiting, "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"),
        (blue_green(auto_promote=True, promote_delay_seconds=900, promotion_timeout_seconds=300), awaiting,
         "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"),
        (blue_green(promotion_timeout_seconds=300), awaiting, "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"),
        (blue_green(), awaiting, "DEPLOYING/DEPLOYING_AWAITING_PROMOTION"),
    ],
    ids=["blue-green-provisioning", "rolling", "auto-promotion", "timeout-first", "promotion-timeout", "manual"],
)  # fmt: skip
async def test_next_action_at_is_when_the_scheduler_looks_again(
    scenario: Scenario, strategy: Any, reach: Callable[[Scenario], Awaitable[None]], state: str
) -> None:
    await scenario.given_deployment(replicas=2, strategy=strategy)
    await scenario.ready_on_first_revision()
    await scenario.shift_time(600)  # the first promotion's old routes are long gone
    await scenario.tick()

    await reach(scenario)

    deployment = await scenario.deployment()
    assert await scenario.state() == state
    assert deadlines.next_action_at(deployment) == deployment.next_check_at
