"""Limits on what one request may ask for: depth, cost, entity representations, and unauthenticated access."""

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson
from ariadne.validation import cost_validator
from graphql import (
    ArgumentNode,
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    Visitor,
    parse,
    specified_rules,
    validate,
    visit,
)

from store.errors import BadUserInput

# List fields cost their page size (`first`) times what each item selects.
PAGED = {"complexity": 1, "multipliers": ["first"]}
COST_MAP = {
    "Query": {"deployments": PAGED},
    "Deployment": {"revisions": PAGED, "history": PAGED},
    "Project": {"deployments": PAGED},
}
MULTIPLIERS = frozenset(m for fields in COST_MAP.values() for cost in fields.values() for m in cost["multipliers"])
# Fields that need no token: composition tools send none.
PUBLIC_ROOT_FIELDS = frozenset({"_service", "__typename"})


def _depth(
    selection_set: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode], seen: frozenset[str]
) -> int:
    if selection_set is None:
        return 0
    deepest = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if not selection.name.value.startswith("__"):  # introspection has its own switch
                deepest = max(deepest, 1 + _depth(selection.selection_set, fragments, seen))
        elif isinstance(selection, InlineFragmentNode):
            deepest = max(deepest, _depth(selection.selection_set, fragments, seen))
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                deepest = max(deepest, _depth(fragment.selection_set, fragments, seen | {selection.name.value}))
    return deepest


def depth_limit(maximum: int) -> type[ASTValidationRule]:
    class DepthLimit(ASTValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            document = self.context.document
            fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
            depth = _depth(node.selection_set, fragments, frozenset())
            if depth > maximum:
                self.report_error(
                    GraphQLError(f"the query is {depth} levels deep; at most {maximum} are allowed", node)
                )

    return DepthLimit


class _CostErrorsOnly:
    """The cost validator also evaluates arguments, and reports a missing or ill-typed variable as a validation
    error; graphql-core reports those itself, with the right code (BAD_USER_INPUT), when it coerces the variables.
    This view of the validation context passes on the cost errors only (they carry no original error)."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def report_error(self, error: GraphQLError) -> None:
        if error.original_error is None:
            self._context.report_error(error)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def cost_limit(maximum: int, variables: dict[str, Any]) -> type[ASTValidationRule]:
    base: Any = cost_validator(maximum, default_cost=1, variables=variables, cost_map=COST_MAP)

    class CostLimit(base):  # type: ignore[misc, valid-type]
        per_request = True  # depends on the variables: cached per document and multiplier values
        request_variables = variables

        def __init__(self, context: Any) -> None:
            super().__init__(context)
            self.context = _CostErrorsOnly(context)

    return CostLimit


def validation_rules(*, max_depth: int, max_cost: int) -> Callable[..., list[type[ASTValidationRule]]]:
    """Ariadne calls this per request, so the cost validator sees the variables (the router's `_entities` calls pass
    their representations as one)."""

    def rules(context: Any, document: DocumentNode, data: Any) -> list[type[ASTValidationRule]]:
        variables = data.get("variables") if isinstance(data, dict) else None
        return [
            depth_limit(max_depth),
            cost_limit(max_cost, variables if isinstance(variables, dict) else {}),
        ]

    return rules


def cap_entities(schema: GraphQLSchema, maximum: int) -> None:
    """Refuse `_entities` calls with more than `maximum` representations (a gateway batches per request)."""
    assert schema.query_type is not None
    field = schema.query_type.fields["_entities"]
    resolve = field.resolve
    assert resolve is not None

    def capped(obj: Any, info: GraphQLResolveInfo, **kwargs: Any) -> Any:
        count = len(kwargs.get("representations") or [])
        if count > maximum:
            raise BadUserInput(f"_entities takes at most {maximum} representations per request, got {count}")
        return resolve(obj, info, **kwargs)

    field.resolve = capped


def require_authentication(resolver: Callable[..., Any], obj: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    """Every root field but `_service` needs a valid token (when a JWT secret is configured).

    A plain function, not a coroutine: it runs for every field, and an async middleware would turn every field,
    even a plain attribute, into a coroutine (measured: 4.7x slower on a page of 100 deployments).
    """
    error = getattr(info.context, "auth_error", None)
    if error is not None and info.parent_type in (info.schema.query_type, info.schema.mutation_type):
        if info.field_name not in PUBLIC_ROOT_FIELDS:
            raise error
    return resolver(obj, info, **args)


def multiplier_variables(document: DocumentNode) -> tuple[str, ...]:
    """The variables passed to a cost multiplier argument (`first`): the only ones a document's cost depends on.
    (Other arguments only matter to the cost when they fail to coerce, and then the request fails anyway.)"""
    names: list[str] = []

    class Collect(Visitor):
        def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
            if node.name.value in MULTIPLIERS and isinstance(node.value, VariableNode):
                names.append(node.value.name.value)

    visit(document, Collect())
    return tuple(sorted(set(names)))


class DocumentCache:
    """Parsing and validation, done once per distinct query text (the cost rule: per text and multiplier values).

    Validation was a third of the server's CPU on reads and half on promotions; a client sends the same few query
    texts over and over, with the same few page sizes.
    """

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.documents: OrderedDict[str, DocumentNode] = OrderedDict()
        self.validated: dict[int, tuple[DocumentNode, list[GraphQLError], tuple[str, ...]]] = {}
        self.costs: OrderedDict[tuple[int, bytes], list[GraphQLError]] = OrderedDict()

    def parse(self, context: Any, data: dict[str, Any]) -> DocumentNode:
        query = data["query"]
        document = self.documents.get(query)
        if document is not None:
            self.documents.move_to_end(query)
            return document
        document = parse(query)
        self.documents[query] = document
        if len(self.documents) > self.size:
            _, evicted = self.documents.popitem(last=False)
            self.validated.pop(id(evicted), None)
            for key in [k for k in self.costs if k[0] == id(evicted)]:
                del self.costs[key]
        return document

    def validate(
        self, schema: GraphQLSchema, document: DocumentNode, rules: Any = None, max_errors: int | None = None, **_: Any
    ) -> list[GraphQLError]:
        rules = list(rules or specified_rules)
        per_request = [r for r in rules if getattr(r, "per_request", False)]
        cached = self.validated.get(id(document))
        if cached is not None and cached[0] is document:  # the same object, not a new one at a reused address
            errors, multipliers = cached[1], cached[2]
        else:
            errors = validate(schema, document, [r for r in rules if r not in per_request], max_errors=max_errors)
            multipliers = multiplier_variables(document) if not errors else ()
            text = document.loc.source.body if document.loc else None
            if text is not None and self.documents.get(text) is document:  # only documents the cache keeps alive
                self.validated[id(document)] = (document, errors, multipliers)
            else:
                return errors or validate(schema, document, per_request, max_errors=max_errors)
        if errors or not per_request:
            return errors
        variables = getattr(per_request[0], "request_variables", None) or {}
        try:
            key = (id(document), orjson.dumps([variables.get(name) for name in multipliers]))
        except TypeError:  # not JSON: let validation say what is wrong
            return validate(schema, document, per_request, max_errors=max_errors)
        costs = self.costs.get(key)
        if costs is None:
            costs = self.costs[key] = validate(schema, document, per_request, max_errors=max_errors)
            if len(self.costs) > 8 * self.size:
                self.costs.popitem(last=False)
        return costs
