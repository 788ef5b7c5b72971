"""Relay connection shape for a store page."""

from typing import Any

from store.models import Page


def connection(page: Page[Any]) -> dict[str, Any]:
    edges = [{"cursor": cursor, "node": node} for cursor, node in page.items]
    return {
        "edges": edges,
        "page_info": {"has_next_page": page.has_next_page, "end_cursor": edges[-1]["cursor"] if edges else None},
    }
