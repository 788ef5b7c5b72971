"""Relay pagination and filters of deployments, revisions and history."""

import uuid
from typing import Any

import pytest

from store import deployments
from store.models import DeploymentStrategyType, Strategy
from tests.graphql import data, error_code, gql

LIST = """
query($projectId: ID, $lifecycle: [DeploymentLifecycle!], $first: Int, $after: String) {
  deployments(projectId: $projectId, lifecycle: $lifecycle, first: $first, after: $after) {
    edges { cursor node { name } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


async def make(db: Any, project: str, *names: str) -> list[str]:
    ids = []
    for name in names:
        created = await deployments.create_deployment(
            db,
            project_id=project,
            name=name,
            replicas=1,
            strategy=Strategy(type=DeploymentStrategyType.BLUE_GREEN),
            actor="test",
        )
        ids.append(created.id)
    return ids


async def pages(client: Any, first: int, **filters: Any) -> list[list[str]]:
    """Every page, following endCursor until hasNextPage is false."""
    result, after = [], None
    while True:
        page = (await data(client, LIST, {"first": first, "after": after, **filters}))["deployments"]
        result.append([edge["node"]["name"] for edge in page["edges"]])
        assert page["pageInfo"]["endCursor"] == (page["edges"][-1]["cursor"] if page["edges"] else None)
        if not page["pageInfo"]["hasNextPage"]:
            return result
        after = page["pageInfo"]["endCursor"]


@pytest.mark.parametrize(
    ("count", "first", "expected_sizes"),
    [(0, 2, [0]), (1, 1, [1]), (4, 2, [2, 2]), (5, 2, [2, 2, 1]), (3, 100, [3])],
)
async def test_pages_cover_every_deployment_once_in_order(
    client: Any, db: Any, count: int, first: int, expected_sizes: list[int]
) -> None:
    names = [f"d{i}" for i in range(count)]
    await make(db, str(uuid.uuid4()), *names)

    result = await pages(client, first)

    assert [len(p) for p in result] == expected_sizes
    assert [name for page in result for name in page] == names


async def test_a_page_after_the_last_cursor_is_empty(client: Any, db: Any) -> None:
    await make(db, str(uuid.uuid4()), "a", "b")
    last = (await data(client, LIST, {"first": 2}))["deployments"]["pageInfo"]["endCursor"]

    page = (await data(client, LIST, {"first": 2, "after": last}))["deployments"]

    assert page == {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}


async def test_filters_by_project_and_lifecycle(client: Any, db: Any) -> None:
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    await make(db, mine, "a", "b")
    await make(db, theirs, "c")

    assert await pages(client, 10, projectId=mine) == [["a", "b"]]
    assert await pages(client, 10, projectId=theirs, lifecycle=["PENDING"]) == [["c"]]
    assert await pages(client, 10, lifecycle=["READY", "DEPLOYING"]) == [[]]


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"first": 0}, "BAD_USER_INPUT"),
        ({"first": -1}, "BAD_USER_INPUT"),
        ({"first": 101}, "BAD_USER_INPUT"),
        ({"after": "garbage"}, "BAD_USER_INPUT"),
        ({"after": "cmV2aXNpb246MQ=="}, "BAD_USER_INPUT"),  # a revision cursor, not a deployment one
        ({"projectId": "not-a-uuid"}, "BAD_USER_INPUT"),
        ({"lifecycle": ["SLEEPING"]}, "BAD_USER_INPUT"),
    ],
)
async def test_bad_page_arguments_are_refused(client: Any, variables: dict[str, Any], code: str) -> None:
    assert error_code(await gql(client, LIST, variables)) == code


async def test_revisions_page_oldest_first_and_history_newest_first(client: Any, db: Any) -> None:
    [deployment_id] = await make(db, str(uuid.uuid4()), "paged")
    for n in range(3):
        await deployments.add_revision(
            db, deployment_id=deployment_id, image=f"m:{n + 1}", env=None, health_check_path=None, actor="test"
        )
    query = """
    query($id: ID!, $after: String, $historyAfter: String) {
      deployment(id: $id) {
        revisions(first: 2, after: $after) { edges { node { number } } pageInfo { hasNextPage endCursor } }
        history(first: 3, after: $historyAfter) { edges { node { phase message } } pageInfo { hasNextPage endCursor } }
      }
    }"""
    first = (await data(client, query, {"id": deployment_id}))["deployment"]
    assert [e["node"]["number"] for e in first["revisions"]["edges"]] == [1, 2]
    assert first["revisions"]["pageInfo"]["hasNextPage"] is True
    assert [e["node"]["message"] for e in first["history"]["edges"]] == [
        "added revision 3 (m:3)",
        "added revision 2 (m:2)",
        "added revision 1 (m:1)",
    ]
    second = (
        await data(
            client,
            query,
            {
                "id": deployment_id,
                "after": first["revisions"]["pageInfo"]["endCursor"],
                "historyAfter": first["history"]["pageInfo"]["endCursor"],
            },
        )
    )["deployment"]
    assert [e["node"]["number"] for e in second["revisions"]["edges"]] == [3]
    assert second["revisions"]["pageInfo"]["hasNextPage"] is False
    assert [e["node"]["phase"] for e in second["history"]["edges"]] == ["create"]
    assert second["history"]["pageInfo"]["hasNextPage"] is False


def b64(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("query($a: String) { deployments(after: $a) { edges { cursor } } }", {"a": b64("deployment:" + "9" * 20)}),
        ("query($a: String) { deployments(after: $a) { edges { cursor } } }", {"a": b64("deployment:-1")}),
        ("query($a: String) { deployments(after: $a) { edges { cursor } } }", {"a": b64("deployment:-" + "9" * 20)}),
        ("query($a: String) { deployments(after: $a) { edges { cursor } } }", {"a": b64("deployment: 1")}),
        ("query($a: String) { deployments(after: $a) { edges { cursor } } }", {"a": b64("deployment:\u0663")}),
        ("query($a: String) { deployments(after: $a) { edges { cursor } } }", {"a": "\u00e9\u00e9\u00e9\u00e9"}),
        ("query($d: ID!, $a: String) { deployment(id: $d) { history(after: $a) { edges { cursor } } } }",
         {"a": b64(f"history:{2**63}")}),
        ("query($d: ID!, $a: String) { deployment(id: $d) { revisions(after: $a) { edges { cursor } } } }",
         {"a": b64(f"revision:{2**64}")}),
        ("query($n: String) { deployments(name: $n) { edges { cursor } } }", {"n": "a\u0000b"}),
        ("query($n: String) { deployments(name: $n) { edges { cursor } } }", {"n": "model\n"}),
    ],
)  # fmt: skip
async def test_a_malformed_or_out_of_range_cursor_or_filter_is_bad_user_input(
    client: Any, db: Any, query: str, variables: dict[str, Any]
) -> None:
    [deployment_id] = await make(db, str(uuid.uuid4()), "model")

    body = await gql(client, query, {"d": deployment_id, **variables} if "$d" in query else variables)

    assert error_code(body) == "BAD_USER_INPUT", body
    assert "cursor" in body["errors"][0]["message"] or "cannot match" in body["errors"][0]["message"]


async def test_a_name_with_a_trailing_newline_is_not_a_valid_name(client: Any) -> None:
    body = await gql(client, "mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { __typename } }",
                     {"i": {"projectId": str(uuid.uuid4()), "name": "model\n", "replicas": 1,
                            "strategy": {"type": "BLUE_GREEN"}}})  # fmt: skip
    assert error_code(body) == "BAD_USER_INPUT"


async def test_a_failed_field_does_not_fail_another_field_sharing_its_loads(client: Any, scenario: Any) -> None:
    await scenario.given_deployment(replicas=1)
    await scenario.ready_on_first_revision()
    query = """query($a: ID!) { deployment(id: $a) { currentRevision { id } history(first: 0) { edges { cursor } } }
                 x: deployment(id: $a) { currentRevision { id } } }"""

    # The failed `history` cancels its sibling `currentRevision`, which shares its load with `x.currentRevision`.
    response = await client.post("/graphql", json={"query": query, "variables": {"a": scenario.id}})

    assert response.status_code == 200
    assert response.json()["data"] == {"deployment": None, "x": {"currentRevision": {"id": scenario.revisions[0]}}}
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["BAD_USER_INPUT"]


@pytest.mark.parametrize("bad", ["revisions(first: -1)", 'history(after: "bad")', 'revisions(after: "bad")'])
async def test_an_invalid_argument_fails_its_own_field_only(client: Any, db: Any, bad: str) -> None:
    a, b = await make(db, str(uuid.uuid4()), "a", "b")
    alone = await data(client, "query($b: ID!) { b: deployment(id: $b) { name revisions { edges { cursor } } } }",
                       {"b": b})  # fmt: skip

    body = await gql(
        client,
        f"""query($a: ID!, $b: ID!) {{ a: deployment(id: $a) {{ {bad} {{ edges {{ cursor }} }} }}
              b: deployment(id: $b) {{ name revisions {{ edges {{ cursor }} }} }} }}""",
        {"a": a, "b": b},
    )

    assert body["data"] == {"a": None, **alone}
    assert [(e["extensions"]["code"], e["path"][0]) for e in body["errors"]] == [("BAD_USER_INPUT", "a")]


async def test_a_cursor_written_by_postgresql_is_the_one_python_writes(db: Any) -> None:
    from store.pagination import cursor_sql, decode_cursor, encode_cursor

    positions = [0, 1, 7, 99, 12345, 2**31, 2**63 - 1]
    for kind in ("deployment", "revision", "history"):
        sql = f"SELECT {cursor_sql(kind, 'p')} FROM unnest(CAST(:positions AS bigint[])) AS t(p) ORDER BY p"
        written = [row[0] for row in await db.fetch_all(sql, {"positions": positions})]
        assert written == [encode_cursor(kind, p) for p in positions]
        assert [decode_cursor(kind, c, 0) for c in written] == positions
