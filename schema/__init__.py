"""The subgraph SDL: the `.graphql` files beside this module are the source of truth."""

from pathlib import Path

SCHEMA_DIR = Path(__file__).parent
