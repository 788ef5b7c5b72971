"""Driving the scheduler, the process runtime and the health checker by hand, polling with a deadline."""

import asyncio
import time
from collections.abc import Awaitable, Callable

from scheduler.probes import HealthChecker
from scheduler.process_runtime import ProcessRuntime
from scheduler.providers import Providers
from scheduler.runner import run_once
from tests.scenario import Scenario


class Machine:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.runtime = ProcessRuntime(scenario.db, stop_grace_seconds=2)
        self.checker = HealthChecker(scenario.db, timeout_seconds=1, healthy_after=1, unhealthy_after=2)
        self.providers: Providers | None = None  # what analysis checks are measured with (run_once's default)

    async def turn(self) -> None:
        """One round of everything the scheduler process does."""
        await run_once(self.scenario.db, providers=self.providers)
        await self.runtime.run_once()
        await self.checker.run_once()
        await run_once(self.scenario.db, providers=self.providers)

    async def until(self, condition: Callable[[], Awaitable[bool]], *, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while not await condition():
            assert time.monotonic() < deadline, f"not reached in {within} s: {await self.scenario.history()}"
            await self.turn()
            await asyncio.sleep(0.05)

    async def until_state(self, state: str, *, within: float = 30) -> None:
        async def reached() -> bool:
            return await self.scenario.state() == state

        await self.until(reached, within=within)
