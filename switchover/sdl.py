"""The subgraph SDL exactly as `_service { sdl }` serves it to composition tools."""

from graphql import graphql_sync

from resolvers import make_schema


def subgraph_sdl() -> str:
    result = graphql_sync(make_schema(), "{ _service { sdl } }")
    assert result.data is not None, result.errors
    return result.data["_service"]["sdl"]
