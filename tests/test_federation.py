"""The federation contract: `_service { sdl }` and batched `_entities`."""

import uuid
from typing import Any

from graphql import GraphQLEnumType, GraphQLInputObjectType, GraphQLObjectType, parse

from resolvers import make_schema, type_defs
from store import deployments
from store.models import DeploymentStrategyType, Strategy
from tests.graphql import data

ENTITIES = """
query($representations: [_Any!]!) {
  _entities(representations: $representations) {
    __typename
    ... on Deployment { id name }
    ... on Revision { id number }
    ... on Route { id }
    ... on Project { id deployments { edges { node { name } } } }
  }
}
"""


async def test_service_sdl_links_federation_2_6_and_declares_the_entities(client: Any) -> None:
    sdl = (await data(client, "{ _service { sdl } }"))["_service"]["sdl"]

    assert '@link(url: "https://specs.apollo.dev/federation/v2.6"' in sdl
    for entity in ("Deployment", "Revision", "Route", "Project"):
        assert f'type {entity} @key(fields: "id")' in sdl
    assert "promoteDeployment(input: PromoteDeploymentInput!): PromoteDeploymentPayload!" in sdl


def test_every_type_field_argument_and_enum_value_is_described() -> None:
    schema = make_schema()
    ours = {d.name.value for d in parse(type_defs()).definitions if hasattr(d, "name") and d.name is not None}
    missing = []
    for name in sorted(ours):
        kind = schema.type_map[name]
        if not kind.description and name not in ("Query", "Mutation"):
            missing.append(name)
        if isinstance(kind, (GraphQLObjectType, GraphQLInputObjectType)):
            for field_name, field in kind.fields.items():
                if field_name.startswith("_"):
                    continue
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    if not arg.description and name not in ("Query", "Mutation"):
                        missing.append(f"{name}.{field_name}({arg_name})")
        if isinstance(kind, GraphQLEnumType):
            missing += [f"{name}.{v}" for v, value in kind.values.items() if not value.description]
    assert missing == []


async def test_entities_come_back_in_order_with_null_for_unknown_ids(client: Any, db: Any) -> None:
    project = str(uuid.uuid4())
    strategy = Strategy(type=DeploymentStrategyType.BLUE_GREEN)
    a = await deployments.create_deployment(
        db, project_id=project, name="a", replicas=1, strategy=strategy, actor="test"
    )
    b = await deployments.create_deployment(
        db, project_id=project, name="b", replicas=1, strategy=strategy, actor="test"
    )
    revision = await deployments.add_revision(
        db, deployment_id=a.id, image="m:1", env=None, health_check_path=None, actor="test"
    )
    representations = [
        {"__typename": "Deployment", "id": b.id},
        {"__typename": "Deployment", "id": str(uuid.uuid4())},
        {"__typename": "Revision", "id": revision.id},
        {"__typename": "Deployment", "id": a.id},
        {"__typename": "Route", "id": str(uuid.uuid4())},
        {"__typename": "Deployment", "id": "not-a-uuid"},
        {"__typename": "Project", "id": project},
    ]

    result = await data(client, ENTITIES, {"representations": representations})

    assert result["_entities"] == [
        {"__typename": "Deployment", "id": b.id, "name": "b"},
        None,
        {"__typename": "Revision", "id": revision.id, "number": 1},
        {"__typename": "Deployment", "id": a.id, "name": "a"},
        None,
        None,
        {
            "__typename": "Project",
            "id": project,
            "deployments": {"edges": [{"node": {"name": "a"}}, {"node": {"name": "b"}}]},
        },
    ]


async def test_entity_lookups_take_one_query_per_type(client: Any, db: Any, monkeypatch: Any) -> None:
    project = str(uuid.uuid4())
    strategy = Strategy(type=DeploymentStrategyType.BLUE_GREEN)
    created = [
        await deployments.create_deployment(
            db, project_id=project, name=f"d{i}", replicas=1, strategy=strategy, actor="test"
        )
        for i in range(10)
    ]
    for d in created:
        await deployments.add_revision(db, deployment_id=d.id, image="m:1", env=None, health_check_path=None, actor="t")
    queries: list[str] = []
    fetch_all = db.fetch_all

    async def counting_fetch_all(query: str, values: Any = None) -> Any:
        queries.append(query)
        return await fetch_all(query, values)

    monkeypatch.setattr(db, "fetch_all", counting_fetch_all)
    query = """
    query($representations: [_Any!]!) {
      _entities(representations: $representations) {
        ... on Deployment {
          id
          revisions { edges { node { number deployment { name } } } }
          history { edges { node { phase } } }
          routes { id }
        }
      }
    }"""

    result = await data(client, query, {"representations": [{"__typename": "Deployment", "id": d.id} for d in created]})

    assert len(result["_entities"]) == 10
    # deployments, their revisions, their history, their routes: one statement each, whatever the count.
    assert len(queries) == 4, queries
