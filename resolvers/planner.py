"""Plain reads in one SQL statement: a query whose every field is a column, a relation or a page of the read model
is answered by `store.json_reads` instead of field-by-field execution.

Field-by-field execution is the reference: it answers every query, with every error. The planner only takes an
operation it can answer exactly as execution would, and hands anything else to it: mutations, subscriptions,
federation fields, computed fields (`strategy`, `waitingFor`, `nextActionAt`), arguments that execution would
refuse (it reports them), merged selections, records the caller may not read (FORBIDDEN comes from execution).
The answer is the JSON text PostgreSQL built, passed to the response unparsed (`orjson.Fragment`), so this path is
for HTTP responses only (`Context.plain_json`).
"""

from collections.abc import Callable
from typing import Any

import orjson
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
    get_argument_values,
)
from graphql.execution.values import get_directive_values

from resolvers.auth import Principal, readable_projects
from resolvers.context import Context
from store import json_reads
from store.json_reads import ById, Edges, Leaf, Obj, One, Page, PageInfo, Root, Routes, Typename
from store.pagination import decode_cursor, page_size
from store.validation import canonical_id, parse_id

MAX_KEYS = 50  # json_build_object takes at most 100 arguments


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

    def arguments(self, type_name: str, node: FieldNode) -> dict[str, Any]:
        field: GraphQLField = self.schema.get_type(type_name).fields[node.name.value]
        try:
            return get_argument_values(field, node, self.variables)
        except Exception as refused:  # execution reports it
            raise Unsupported("arguments execution would refuse") from refused

    def obj(self, type_name: str, selection_set: SelectionSetNode | None) -> Obj:
        columns = json_reads.SUPPORTED_LEAVES[type_name]
        out: list[tuple[str, json_reads.Node]] = []
        for key, node in self.fields(type_name, selection_set):
            name = node.name.value
            if name == "__typename" or (name in columns and not node.arguments):
                out.append((key, Leaf(name)))
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
        for key, part in self.fields(connection, node.selection_set):
            name = part.name.value
            if name == "__typename":
                shape.append((key, "__typename"))
            elif name == "pageInfo":
                info = tuple((k, p.name.value) for k, p in self.fields("PageInfo", part.selection_set))
                shape.append((key, PageInfo(info)))
            elif name == "edges":
                edge: list[tuple[str, str | Obj]] = []
                for edge_key, edge_part in self.fields(f"{ordering.node_type}Edge", part.selection_set):
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
                project_ids = None if self.principal.is_admin else readable_projects(self.principal)
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
