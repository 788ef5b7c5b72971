"""Schema-diff checks and the composed supergraph, as CI runs them."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from switchover.schema_tools import ROOT, check, diff
from switchover.sdl import subgraph_sdl

INSPECTOR = ROOT / "federation" / "node_modules" / ".bin" / "graphql-inspector"
needs_node = pytest.mark.skipif(
    not INSPECTOR.exists() or shutil.which("node") is None, reason="needs `npm ci` in federation/ (make test does it)"
)

HEAD = 'extend schema @link(url: "https://specs.apollo.dev/federation/v2.6", import: ["@key"])\n'
BASE = """
type Query { thing(id: ID!): Thing  things(first: Int): [Thing!]! }
type Thing @key(fields: "id") { id: ID!  name: String  color: Color  weight: Float }
enum Color { RED GREEN }
input ThingInput { name: String  color: Color }
type Mutation { addThing(input: ThingInput!): Thing }
"""

# (name, new schema): each is compared with BASE by graphql-core (ours) and by graphql-inspector.
PAIRS = [
    ("field removed", BASE.replace("  name: String  color", "  color")),
    ("field added", BASE.replace("weight: Float }", "weight: Float  size: Int }")),
    ("enum value added", BASE.replace("enum Color { RED GREEN }", "enum Color { RED GREEN BLUE }")),
    ("enum value removed", BASE.replace("enum Color { RED GREEN }", "enum Color { RED }")),
    ("required argument added", BASE.replace("things(first: Int)", "things(first: Int, owner: ID!)")),
    ("optional argument added", BASE.replace("things(first: Int)", "things(first: Int, owner: ID)")),
    ("input field made required", BASE.replace("{ name: String  color: Color }", "{ name: String!  color: Color }")),
    ("output field made non-null", BASE.replace("  name: String  color", "  name: String!  color")),
    ("type removed with its field", BASE.replace("  weight: Float", "")),
    ("description added", BASE.replace("type Thing", '"A thing." type Thing')),
]


def inspector(old: Path, new: Path) -> tuple[int, int]:
    """(breaking, dangerous) counts as graphql-inspector reports them."""
    result = subprocess.run(
        [str(INSPECTOR), "diff", str(old), str(new), "--federationV2"], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert "Error" not in output.replace("[error] Detected", ""), output
    return len(re.findall("✖", output)), len(re.findall("⚠", output))


@needs_node
@pytest.mark.parametrize(("name", "new"), PAIRS, ids=[p[0] for p in PAIRS])
def test_our_diff_agrees_with_graphql_inspector(tmp_path: Path, name: str, new: str) -> None:
    (tmp_path / "old.graphql").write_text(HEAD + BASE)
    (tmp_path / "new.graphql").write_text(HEAD + new)

    ours = diff(HEAD + BASE, HEAD + new)
    breaking, dangerous = inspector(tmp_path / "old.graphql", tmp_path / "new.graphql")

    assert len(ours.breaking) == breaking, (ours, breaking)
    assert bool(ours.dangerous) == bool(dangerous), (ours, dangerous)


def test_a_standard_scalar_that_is_no_longer_used_is_not_reported_as_removed() -> None:
    result = diff(HEAD + BASE, HEAD + BASE.replace("  weight: Float", ""))
    assert result.breaking == ["FIELD_REMOVED: Field Thing.weight was removed."]


def test_an_unacknowledged_breaking_change_fails_the_check_and_an_acknowledged_one_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    current = subgraph_sdl()
    older = tmp_path / "older.graphql"
    older.write_text(
        current.replace("type Deployment @key", 'type Deployment @key(fields: "id") { legacy: Int }\ntype Old @key')
    )
    acknowledgements = tmp_path / "acknowledged.toml"

    assert check(str(older), current=current, acknowledgements=acknowledgements) == 1
    assert "NOT ACKNOWLEDGED" in capsys.readouterr().out

    acknowledgements.write_text(
        '[[breaking]]\nchange = "TYPE_REMOVED: Old was removed."\nreason = "never used"\n'
        '[[breaking]]\nchange = "FIELD_REMOVED: Field Deployment.legacy was removed."\nreason = "never used"\n'
    )
    assert check(str(older), current=current, acknowledgements=acknowledgements) == 0


def test_the_schema_does_not_break_against_the_previous_commit() -> None:
    previous = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD~1"], capture_output=True, cwd=ROOT)
    if previous.returncode != 0:
        pytest.skip("no previous commit in this clone")
    result = subprocess.run(
        [sys.executable, "-m", "switchover", "schema", "check", "--against", "HEAD~1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_node
def test_the_committed_supergraph_is_composed_from_the_current_schemas() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "switchover", "schema", "compose", "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
