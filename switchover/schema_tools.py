"""Schema tooling for CI: compose the supergraph, and diff the subgraph SDL against a git ref or a file."""

import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ariadne.contrib.federation import make_federated_schema
from graphql import BreakingChange, DangerousChange, GraphQLSchema, find_breaking_changes, find_dangerous_changes

from switchover.sdl import subgraph_sdl

ROOT = Path(__file__).resolve().parent.parent
FEDERATION = ROOT / "federation"
ACKNOWLEDGED = ROOT / "schema" / "acknowledged-changes.toml"


def compose() -> str:
    """The supergraph SDL composed from supergraph.yaml by @apollo/composition (needs `npm ci` in federation/)."""
    with tempfile.NamedTemporaryFile("w", suffix=".graphql") as sdl:
        sdl.write(subgraph_sdl())
        sdl.flush()
        result = subprocess.run(
            ["node", str(FEDERATION / "compose.mjs"), str(ROOT / "supergraph.yaml"), "--sdl", f"switchover={sdl.name}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    if result.returncode != 0:
        raise SystemExit(f"composition failed:\n{result.stderr}")
    return result.stdout


def sdl_at(source: str) -> str:
    """The subgraph SDL in a file, or in `schema/*.graphql` at a git ref."""
    path = Path(source)
    if path.is_file():
        return path.read_text()
    listing = subprocess.run(
        ["git", "ls-tree", "--name-only", source, "schema/"], capture_output=True, text=True, cwd=ROOT
    )
    if listing.returncode != 0:
        raise SystemExit(f"{source!r} is neither a file nor a git ref: {listing.stderr.strip()}")
    files = [f for f in listing.stdout.split() if f.endswith(".graphql")]
    return "\n".join(
        subprocess.run(["git", "show", f"{source}:{f}"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
        for f in files
    )


def build(sdl: str) -> GraphQLSchema:
    return make_federated_schema(sdl)


@dataclass(frozen=True)
class Diff:
    breaking: list[str]
    dangerous: list[str]


def _describe(change: BreakingChange | DangerousChange) -> str:
    return f"{change.type.name}: {change.description}"


def _relevant(change: BreakingChange | DangerousChange) -> bool:
    # graphql-core 3.3 reports a standard scalar that is no longer referenced as removed; it is built in, not gone.
    if change.description.startswith("Standard scalar "):
        return False
    # `_Entity` is federation plumbing that follows the entities: removing an entity is reported on its own.
    return "_Entity" not in change.description


def diff(old_sdl: str, new_sdl: str) -> Diff:
    old, new = build(old_sdl), build(new_sdl)
    return Diff(
        [_describe(c) for c in find_breaking_changes(old, new) if _relevant(c)],
        [_describe(c) for c in find_dangerous_changes(old, new) if _relevant(c)],
    )


def acknowledged(path: Path = ACKNOWLEDGED) -> dict[str, str]:
    """Breaking changes made on purpose: change description -> reason."""
    if not path.exists():
        return {}
    entries = tomllib.loads(path.read_text()).get("breaking", [])
    for entry in entries:
        if not entry.get("reason", "").strip():
            raise SystemExit(f"{path}: the acknowledgement of {entry.get('change')!r} needs a reason")
    return {entry["change"]: entry["reason"] for entry in entries}


def check(against: str, *, current: str | None = None, acknowledgements: Path = ACKNOWLEDGED) -> int:
    """Print the changes from `against` to the current SDL; 1 when a breaking change is not acknowledged."""
    result = diff(sdl_at(against), subgraph_sdl() if current is None else current)
    accepted = acknowledged(acknowledgements)
    unacknowledged = [c for c in result.breaking if c not in accepted]
    for change in result.breaking:
        mark = f"acknowledged: {accepted[change]}" if change in accepted else "NOT ACKNOWLEDGED"
        print(f"BREAKING  {change}  [{mark}]")
    for change in result.dangerous:
        print(f"DANGEROUS {change}")
    if not result.breaking and not result.dangerous:
        print(f"no breaking or dangerous changes against {against}")
    if unacknowledged:
        print(
            f"\n{len(unacknowledged)} breaking change(s) not acknowledged: add each to "
            f"{acknowledgements.name} with a reason, or undo it"
        )
        return 1
    return 0
