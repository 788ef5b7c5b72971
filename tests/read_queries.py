"""A Hypothesis strategy for read queries, drawn from the schema itself: the selections a client may write over the
plain fields of Query (aliases, inline fragments and named ones, variables, @skip/@include, `__typename`, pages with
`first` and `after`), with argument values that find records, find nothing, or are refused."""

import json
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    get_named_type,
    get_nullable_type,
)
from hypothesis import strategies as st

from store.pagination import encode_cursor

# Fields execution computes in Python: a query selecting one is left to execution, so they are drawn rarely (most
# examples should compare the planner with execution, not execution with itself).
COMPUTED = {("Deployment", "strategy"), ("Deployment", "waitingFor"), ("Deployment", "nextActionAt")}
# Fields execution alone answers, each with tests of its own (analysis runs: tests/test_analysis.py, shadow
# statistics: tests/test_shadow.py, governance: tests/test_approvals.py, tests/test_freeze_windows.py): never drawn.
NOT_DRAWN = {("Deployment", "analysisRuns"), ("Deployment", "shadowStats")}
NOT_DRAWN |= {("Deployment", "approvals"), ("Deployment", "activeFreezeWindow")}
# Webhooks: operators only, with tests of their own (tests/test_webhooks.py).
NOT_DRAWN |= {("Query", "webhooks"), ("Query", "webhookDeliveries")}
CURSOR_KINDS = {"deployments": "deployment", "revisions": "revision", "history": "history"}
MAX_DEPTH = 6  # object levels below Query; a page is three (connection, edge, node)


@dataclass(frozen=True)
class Records:
    """What the database holds, for argument values that find something: ids by type, project ids, names, and the
    positions cursors name, by cursor kind."""

    ids: dict[str, list[str]]
    projects: list[str]
    names: list[str]
    positions: dict[str, list[int]]


Draw = Any  # hypothesis' draw function


class _Writer:
    """Writes one operation, collecting the variables and fragment definitions its selections use."""

    def __init__(self, draw: Draw, schema: GraphQLSchema, records: Records) -> None:
        self.draw = draw
        self.schema = schema
        self.records = records
        self.definitions: list[str] = []
        self.variables: dict[str, Any] = {}
        self.fragments: list[str] = []
        self.aliases = 0

    def chance(self, one_in: int) -> bool:
        # "1 in n" shrinks towards False: a failing example shrinks towards fewer aliases, fragments and directives.
        return self.draw(st.integers(0, one_in - 1)) == one_in - 1

    def variable(self, type_text: str, value: Any, literal: str) -> str:
        """A variable for a value: sent, or (nullable types) left unsent with the value as its default."""
        name = f"v{len(self.definitions)}"
        if not type_text.endswith("!") and self.chance(4):
            self.definitions.append(f"${name}: {type_text} = {literal}")
        else:
            self.definitions.append(f"${name}: {type_text}")
            self.variables[name] = value
        return f"${name}"

    def operation(self) -> tuple[str, dict[str, Any]]:
        selections = self.selection_set("Query", 0, {})
        header = f"query({', '.join(self.definitions)}) " if self.definitions else ""
        return " ".join([header + selections, *self.fragments]), self.variables

    def selection_set(self, type_name: str, depth: int, keys: dict[str, str]) -> str:
        """`keys`: the response keys already selected on this object (fragments merge into it), with what they
        select; a key is selected again only for the same field with the same arguments, so that most operations
        are valid."""
        count = self.draw(st.integers(1, 3 if depth < 3 else 2))
        return "{ " + " ".join(self.selection(type_name, depth, keys) for _ in range(count)) + " }"

    def selection(self, type_name: str, depth: int, keys: dict[str, str]) -> str:
        if self.chance(8):
            condition = f" on {type_name}" if self.draw(st.booleans()) else ""
            return f"...{condition}{self.directives()} {self.selection_set(type_name, depth, keys)}"
        if self.chance(8):
            index = len(self.fragments)
            self.fragments.append("")  # reserve the name: the fragment's own selections may define more
            self.fragments[index] = f"fragment F{index} on {type_name} {self.selection_set(type_name, depth, keys)}"
            return f"...F{index}{self.directives()}"
        return self.field(type_name, depth, keys)

    def field(self, type_name: str, depth: int, keys: dict[str, str]) -> str:
        object_type = self.schema.get_type(type_name)
        assert isinstance(object_type, GraphQLObjectType)
        leaves, objects = [], []
        for name, definition in object_type.fields.items():
            if not name.startswith("_") and (type_name, name) not in COMPUTED | NOT_DRAWN:
                is_object = isinstance(get_named_type(definition.type), GraphQLObjectType)
                (objects if is_object else leaves).append(name)
        computed = sorted(name for t, name in COMPUTED if t == type_name)
        if depth >= MAX_DEPTH:
            objects, computed = [], []
        # Relations and pages as often as columns: they are where the planner and execution differ most.
        if not (leaves or objects) or self.chance(6):  # a connection at MAX_DEPTH selects nothing else
            name = "__typename"
        elif computed and self.chance(30):
            name = self.draw(st.sampled_from(computed))
        elif objects and (not leaves or self.draw(st.booleans())):
            name = self.draw(st.sampled_from(objects))
        else:
            name = self.draw(st.sampled_from(leaves))
        key = self.draw(st.sampled_from(["a", "b", name + "_"])) if self.chance(6) else name
        definition = object_type.fields.get(name)  # None for __typename
        arguments = {} if definition is None else definition.args
        given = [text for text in (self.argument(type_name, name, a, arg) for a, arg in arguments.items()) if text]
        call = name + (f"({', '.join(given)})" if given else "")
        returned = None if definition is None else get_named_type(definition.type)
        has_selections = isinstance(returned, GraphQLObjectType)
        # A key selected again merges with the earlier selection of it: common for a column; for a relation or a page
        # (which the planner leaves to execution) only now and then.
        earlier = keys.get(key)
        if earlier is not None and (earlier != call or (has_selections and not self.chance(4))):
            self.aliases += 1
            key = f"{name}{self.aliases}"
        keys[key] = call
        text = (f"{key}: " if key != name else "") + call + self.directives()
        if has_selections:
            text += " " + self.selection_set(returned.name, depth + 1, {})
        return text

    def directives(self) -> str:
        if not self.chance(6):
            return ""
        directive = self.draw(st.sampled_from(["skip", "include"]))
        value = self.draw(st.booleans())
        literal = json.dumps(value)
        condition = self.variable("Boolean!", value, literal) if self.draw(st.booleans()) else literal
        return f" @{directive}(if: {condition})"

    def argument(self, type_name: str, field_name: str, name: str, arg: GraphQLArgument) -> str:
        """`name: value` (a literal or a variable), or "" for an optional argument left out."""
        required = isinstance(arg.type, GraphQLNonNull)
        if not required and not self.chance(4):
            return ""
        value = self.draw(self.values(type_name, field_name, name, arg))
        literal = _literal(value, arg.type)
        if self.chance(3):
            return f"{name}: {self.variable(str(arg.type), value, literal)}"
        return f"{name}: {literal}"

    def values(self, type_name: str, field_name: str, name: str, arg: GraphQLArgument) -> st.SearchStrategy[Any]:
        records = self.records
        nowhere = ["00000000-0000-0000-0000-000000000000", "not-a-uuid"]
        named = get_named_type(arg.type)
        if name == "id":
            own = st.sampled_from(records.ids[field_name.capitalize()])
            others = [i for ids in records.ids.values() for i in ids]
            return st.one_of(own, own, own, own.map(str.upper), st.sampled_from(others + nowhere))
        if name == "projectId":
            return st.sampled_from(records.projects) | st.sampled_from(nowhere)
        if name == "name":
            return st.sampled_from([*records.names, "no-such-name"])
        if name == "first":
            return st.sampled_from([1, 2, 3, 20, 100, None]) | st.sampled_from([0, 101])
        if name == "after":
            kind = CURSOR_KINDS[field_name]
            known = records.positions[kind]
            positions = st.one_of(st.sampled_from(known), st.sampled_from(known), st.integers(-1, max(known) + 2))
            cursors = (positions | st.just(2**31)).map(lambda p: encode_cursor(kind, p))
            return cursors | st.sampled_from([None, "bm90LWEtY3Vyc29y"])
        if isinstance(named, GraphQLEnumType):
            names = st.sampled_from(sorted(named.values))
            if isinstance(get_nullable_type(arg.type), GraphQLList):
                return st.lists(names, max_size=3, unique=True)
            return names
        raise AssertionError(f"no values for {type_name}.{field_name}({name}:)")


def _literal(value: Any, type_: Any) -> str:
    """The GraphQL literal of a JSON value of the type: enum values unquoted."""
    if value is None:
        return "null"
    nullable = get_nullable_type(type_)
    if isinstance(nullable, GraphQLList):
        return "[" + ", ".join(_literal(v, nullable.of_type) for v in value) + "]"
    if isinstance(nullable, GraphQLEnumType):
        return str(value)
    return json.dumps(value)


@st.composite
def read_queries(draw: Draw, schema: GraphQLSchema, records: Records) -> tuple[str, dict[str, Any]]:
    """A query text and its variables."""
    return _Writer(draw, schema, records).operation()
