"""Parsing and validation of query texts, cached: a client sends the same few texts over and over."""

from collections import OrderedDict
from typing import Any

import orjson
from graphql import (
    ArgumentNode,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    VariableNode,
    Visitor,
    parse,
    specified_rules,
    validate,
    visit,
)

from resolvers.limits import MULTIPLIERS


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
