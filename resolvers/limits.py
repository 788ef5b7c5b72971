"""Limits on what one request may ask for: depth, cost and entity representations."""

from collections.abc import Callable
from typing import Any

from ariadne.validation import cost_validator
from graphql import (
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
