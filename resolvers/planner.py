"""Plain reads in one SQL statement: a query whose every field is a column, a relation or a page of the read model
is answered by `store.json_reads` instead of field-by-field execution.

Field-by-field execution is the reference: it answers every query, with every error. The planner only takes an
operation it can answer exactly as execution would, and hands anything else to it: mutations, subscriptions,
federation fields, computed fields (`strategy`, `waitingFor`, `nextActionAt`), arguments that execution would
refuse (it reports them), merged selections, records the caller may not read (execution answers them as missing).
What it may take is read from the schema's bindings, not from field names: a field execution answers with the
record's own attribute (no resolver, or the renaming one of Ariadne's `convert_names_case`) whose column
`store.json_reads` knows, or a field still bound to the very resolver the planner replaces (`REPLACED`). A field
that gets a resolver of its own is therefore left to execution without a change here.
The answer is the JSON text PostgreSQL built, passed to the response unparsed (`orjson.Fragment`), so this path is
for HTTP responses only (`Context.plain_json`).
"""

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson
from ariadne import convert_camel_case_to_snake, is_default_resolver
from graphql import (
    ExecutionResult,
    Executor,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLIncludeDirective,
    GraphQLSkipDirective,
    InlineFragmentNode,
    OperationType,
    SelectionSetNode,
    VariableValues,
    default_field_resolver,
    get_argument_values,
)
from graphql.execution.values import get_directive_values

from resolvers import entities
from resolvers.auth import Principal, readable_projects
from resolvers.context import Context
from resolvers.query import resolve_deployment, resolve_deployments, resolve_revision, resolve_route
from store import json_reads
from store.json_reads import ById, Edges, Leaf, Obj, One, Page, PageInfo, Root, Routes, Typename
from store.pagination import decode_cursor, page_size
from store.validation import canonical_id, check_name_filter, parse_id

MAX_KEYS = 50  # json_build_object takes at most 100 arguments


# The resolvers whose answer the planner writes in SQL instead, by the field they are bound to. A field is planned only
# while the schema binds exactly this function to it: bound to any other resolver, it is left to execution.
REPLACED: dict[tuple[str, str], Callable[..., Any]] = {
    ("Query", "deployment"): resolve_deployment,
    ("Query", "deployments"): resolve_deployments,
    ("Query", "revision"): resolve_revision,
    ("Query", "route"): resolve_route,
    ("Deployment", "currentRevision"): entities.resolve_current_revision,
    ("Deployment", "deployingRevision"): entities.resolve_deploying_revision,
    ("Deployment", "routes"): entities.resolve_routes,
    ("Deployment", "revisions"): entities.resolve_revisions,
    ("Deployment", "history"): entities.resolve_history,
    ("Revision", "deployment"): entities.resolve_record_deployment,
    ("Route", "deployment"): entities.resolve_record_deployment,
    ("Route", "revision"): entities.resolve_route_revision,
}

_PROBE = object()


def reads_own_attribute(name: str, field: GraphQLField) -> bool:
    """Whether execution answers the field with its parent's attribute (or key) of the field's snake_case name:
    graphql-core's default resolver, or the one Ariadne's `convert_names_case` installs on camelCase fields. Any
    other resolver is the project's own, an Ariadne alias to another attribute (`set_alias`) included."""
    return field.resolve is None or _reads_own_attribute(field.resolve, name)


@lru_cache(maxsize=1024)  # asked for every selected field of every planned request; the answer never changes
def _reads_own_attribute(resolver: Callable[..., Any], name: str) -> bool:
    if resolver is default_field_resolver:
        return True
    if not is_default_resolver(resolver):
        return False
    # Ariadne's renaming and alias resolvers are the same function of different names: ask this one which it reads.
    return resolver({convert_camel_case_to_snake(name): _PROBE}, None) is _PROBE


class Unsupported(Exception):
    """The operation is left to field-by-field execution."""


class _Planner:
    def __init__(
        self,
        schema: Any,
        fragments: dict[str, FragmentDefinitionNode],
        variables: VariableValues,
        principal: Principal,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.principal = principal

    def fields(self, type_name: str, selection_set: SelectionSetNode | None) -> list[tuple[str, FieldNode]]:
        """The selected fields by response key, in order, through fragments and @skip/@include."""
        if selection_set is None:
            raise Unsupported("no selection")
        found: dict[str, FieldNode] = {}
        self._collect(type_name, selection_set, found, set())
        if len(found) > MAX_KEYS:
            raise Unsupported("too many keys for one object")
        return list(found.items())

    def _collect(self, type_name: str, selection_set: SelectionSetNode, found: dict[str, FieldNode], seen: set) -> None:
        for selection in selection_set.selections:
            if not self._included(selection):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                earlier = found.get(key)
                if earlier is None:
                    found[key] = selection
                elif earlier.selection_set or selection.selection_set or earlier.arguments or selection.arguments:
                    raise Unsupported("a response key selected twice with sub-selections or arguments")
                continue
            if isinstance(selection, InlineFragmentNode):
                fragment_type, sub = selection.type_condition, selection.selection_set
            else:
                assert isinstance(selection, FragmentSpreadNode)
                name = selection.name.value
                if name in seen:
                    continue
                seen.add(name)
                definition = self.fragments[name]
                fragment_type, sub = definition.type_condition, definition.selection_set
            if fragment_type is not None and fragment_type.name.value != type_name:
                raise Unsupported("a fragment on another type")
            self._collect(type_name, sub, found, seen)

    def _included(self, node: Any) -> bool:
        if not node.directives:
            return True
        try:
            skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
            include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        except Exception as refused:  # e.g. `if: $s` with a null sent for a defaulted $s: execution reports it
            raise Unsupported("directive arguments execution would refuse") from refused
        if skip is not None and skip["if"]:
            return False
        return include is None or bool(include["if"])

    def field(self, type_name: str, name: str) -> GraphQLField:
        return self.schema.get_type(type_name).fields[name]

    def plain(self, type_name: str, name: str) -> bool:
        """Whether execution answers this field with the parent record's (or connection dict's) own value."""
        return name == "__typename" or reads_own_attribute(name, self.field(type_name, name))

    def replaced(self, type_name: str, name: str) -> bool:
        """Whether the field is still bound to the resolver the planner answers for."""
        expected = REPLACED.get((type_name, name))
        return expected is not None and self.field(type_name, name).resolve is expected

    def arguments(self, type_name: str, node: FieldNode) -> dict[str, Any]:
        field = self.field(type_name, node.name.value)
        try:
            return get_argument_values(field, node, self.variables)
        except Exception as refused:  # execution reports it
            raise Unsupported("arguments execution would refuse") from refused

    def obj(self, type_name: str, selection_set: SelectionSetNode | None) -> Obj:
        columns = json_reads.COLUMNS[type_name]
        out: list[tuple[str, json_reads.Node]] = []
        for key, node in self.fields(type_name, selection_set):
            name = node.name.value
            if self.plain(type_name, name):
                # e.g. `strategy` is an attribute too, but not a column: the planner cannot write it
                if name != "__typename" and (name not in columns or node.arguments):
                    raise Unsupported(f"{type_name}.{name} is not a column")
                out.append((key, Leaf(name)))
            elif not self.replaced(type_name, name):
                raise Unsupported(f"{type_name}.{name} has a resolver of its own")
            elif (type_name, name) in json_reads.TO_ONE:
                related, _ = json_reads.TO_ONE[(type_name, name)]
                out.append((key, One(name, self.obj(related, node.selection_set))))
            elif (type_name, name) == ("Deployment", "routes"):
                args = self.arguments(type_name, node)
                statuses = args.get("status")
                traffic = args.get("traffic_status")  # Ariadne names arguments in snake_case
                out.append((key, Routes(
                    self.obj("Route", node.selection_set),
                    statuses=None if statuses is None else tuple(str(s) for s in statuses),
                    traffic_status=None if traffic is None else str(traffic),
                )))  # fmt: skip
            elif (type_name, name) in json_reads.PAGES:
                out.append((key, self.page(type_name, node)))
            else:
                raise Unsupported(f"{type_name}.{name}")
        return Obj(type_name, tuple(out))

    def page(self, type_name: str, node: FieldNode, **filters: Any) -> Page:
        ordering = json_reads.PAGES[(type_name, node.name.value)]
        args = self.arguments(type_name, node)
        try:
            limit = page_size(args.get("first"))
            after = args.get("after")
            position = None if after is None else decode_cursor(ordering.cursor, after, 0)
        except Exception as refused:  # BAD_USER_INPUT, from execution
            raise Unsupported("page arguments execution would refuse") from refused
        connection = f"{ordering.node_type}Connection"
        shape: list[tuple[str, str | Edges | PageInfo]] = []
        edge_type = f"{ordering.node_type}Edge"
        for key, part in self.fields(connection, node.selection_set):
            name = part.name.value
            # The connection, its edges and its pageInfo are the dicts `resolvers.connections` builds: planned
            # while execution reads them as they are.
            if not self.plain(connection, name):
                raise Unsupported(f"{connection}.{name} has a resolver of its own")
            if name == "__typename":
                shape.append((key, "__typename"))
            elif name == "pageInfo":
                info = tuple((k, p.name.value) for k, p in self.fields("PageInfo", part.selection_set))
                if not all(self.plain("PageInfo", part_name) for _, part_name in info):
                    raise Unsupported("PageInfo has a resolver of its own")
                shape.append((key, PageInfo(info)))
            elif name == "edges":
                edge: list[tuple[str, str | Obj]] = []
                for edge_key, edge_part in self.fields(edge_type, part.selection_set):
                    if not self.plain(edge_type, edge_part.name.value):
                        raise Unsupported(f"{edge_type}.{edge_part.name.value} has a resolver of its own")
                    if edge_part.name.value == "node":
                        edge.append((edge_key, self.obj(ordering.node_type, edge_part.selection_set)))
                    else:
                        edge.append((edge_key, edge_part.name.value))  # cursor, __typename
                shape.append((key, Edges(tuple(edge))))
            else:
                raise Unsupported(f"{connection}.{name}")
        return Page(node.name.value, limit, position, tuple(shape), filters)

    def root(self, node: FieldNode) -> Root:
        name = node.name.value
        if name == "__typename":
            return Typename("Query")
        if not self.replaced("Query", name):
            raise Unsupported(f"Query.{name}")
        if name in ("deployment", "revision", "route"):
            type_name = name.capitalize()
            id_ = self.arguments("Query", node)["id"]
            return ById(type_name, canonical_id(id_), self.obj(type_name, node.selection_set))
        if name == "deployments":
            args = self.arguments("Query", node)
            project_id = args.get("project_id")
            if project_id is not None:
                try:
                    project_ids = [parse_id(project_id, "projectId")]
                except Exception as refused:
                    raise Unsupported("projectId execution would refuse") from refused
                if not self.principal.can_read(project_ids[0]):
                    raise Unsupported("FORBIDDEN comes from execution")
            else:
                project_ids = readable_projects(self.principal)
            try:
                check_name_filter(args.get("name"))
            except Exception as refused:
                raise Unsupported("name execution would refuse") from refused
            lifecycles = args.get("lifecycle")
            return self.page(
                "Query",
                node,
                project_ids=project_ids,
                name=args.get("name"),
                lifecycles=None if lifecycles is None else [str(lc) for lc in lifecycles],
            )
        raise Unsupported(f"Query.{name}")


def plan(executor: Executor, principal: Principal) -> list[tuple[str, Root]]:
    """The operation's root fields as store reads; raises Unsupported for anything execution should answer."""
    operation = executor.operation
    if operation.operation is not OperationType.QUERY:
        raise Unsupported("not a query")
    planner = _Planner(executor.schema, executor.fragment_definitions, executor.variable_values, principal)
    return [(key, planner.root(node)) for key, node in planner.fields("Query", operation.selection_set)]


class PlannedExecutor(Executor):
    """graphql-core's executor, answering plain reads with one statement (see the module docstring)."""

    def execute_operation(self, serially: bool | None = None) -> Any:
        context = self.context_value
        if isinstance(context, Context) and context.plain_json and context.auth_error is None:
            try:
                roots = plan(self, context.principal)
            except Unsupported:
                pass
            else:
                return self._answer(context, roots, lambda: super(PlannedExecutor, self).execute_operation(serially))
        return super().execute_operation(serially)

    async def _answer(self, context: Context, roots: list[tuple[str, Root]], execute: Callable[[], Any]) -> Any:
        principal = context.principal
        statement = json_reads.statement(roots, check_projects=not principal.is_admin)
        try:
            data, projects = await json_reads.answer(context.db, statement)
        except Exception:  # let execution meet the failure and report it per field, as usual
            data, projects = None, []
        if data is None or any(p is not None and not principal.can_read(p) for p in projects):
            result = execute()
            return (await result) if not isinstance(result, ExecutionResult) else result
        return ExecutionResult(data=orjson.Fragment(data))  # type: ignore[arg-type]
