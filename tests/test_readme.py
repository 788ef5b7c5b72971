"""The README's worked examples are real: every `createDeployment` it shows is accepted as written."""

import re
from pathlib import Path
from typing import Any

import httpx

from switchover.app import create_app
from switchover.settings import Settings
from tests.graphql import gql

README = Path(__file__).parents[1] / "README.md"


async def test_the_readmes_create_deployment_examples_are_accepted(db: Any, database_url: str) -> None:
    examples = re.findall(r"```graphql\n(mutation \{ createDeployment.*?)```", README.read_text(), re.S)
    settings = Settings(database_url=database_url, insecure=True, prometheus_url="http://prometheus.internal:9090")
    transport = httpx.ASGITransport(app=create_app(settings, db))
    async with httpx.AsyncClient(transport=transport, base_url="http://switchover") as client:
        answers = [await gql(client, example) for example in examples]

    assert len(examples) >= 2  # blue-green with analysis, and canary
    assert [a.get("errors") for a in answers] == [None] * len(examples)
