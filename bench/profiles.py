"""Summaries of py-spy's raw (collapsed-stack) profiles: where the CPU time of a process went, by component."""

import re
from collections import Counter
from pathlib import Path

# Each sample is attributed to the component of its innermost frame that is not generic (helpers used by every
# component: stdlib utilities, graphql-core's AST and visitor, dataclass-generated methods).
GENERIC = re.compile(
    r"\((?:uuid|enum|dataclasses|typing|re/|re\.py|copy|functools|abc|weakref|_weakrefset|collections/|contextlib"
    r"|inspect|<string>|graphql/language/(?:visitor|ast)|graphql/pyutils/|graphql/utilities/|graphql/type/)"
)
COMPONENTS = [
    ("GraphQL parse", r"graphql/language/"),
    ("GraphQL validation (incl. Ariadne cost validator)", r"graphql/validation/|ariadne/validation/"),
    ("GraphQL execution", r"graphql/execution/"),
    ("Ariadne (HTTP handler, federation, formatting)", r"ariadne/"),
    ("aiodataloader", r"aiodataloader"),
    ("databases + SQLAlchemy (query compile, rows)", r"databases/|sqlalchemy/"),
    ("asyncpg (protocol, codecs)", r"asyncpg/"),
    ("store/ + records", r"\(store/"),
    ("resolvers/", r"\(resolvers/"),
    ("scheduler/", r"\(scheduler/"),
    ("switchover/ (guards, metrics)", r"\(switchover/|prometheus_client/"),
    ("httpx + SSL context (health checker)", r"httpx/|httpcore/|ssl\.py|certifi"),
    ("uvicorn + h11 (HTTP)", r"uvicorn/|h11/|httptools"),
    ("Starlette", r"starlette/"),
    ("logging (access log)", r"logging/"),
    ("json", r"json/"),
    ("asyncio event loop + sockets", r"asyncio/|selectors\.py|socket\.py"),
]
# Inclusive shares: samples with any frame matching (each sample counted once per line).
INCLUSIVE = [
    ("graphql parse()", r"^parse \(graphql/language/parser\.py"),
    ("graphql validate()", r"^validate \(graphql/validation/validate\.py"),
    ("Ariadne cost validator", r"ariadne/validation/query_cost\.py"),
    ("databases: query compile (SQLAlchemy text())", r"_compile \(databases/backends/postgres\.py|^text \(sqlalchemy"),
    ("databases: Record wrapping / row access", r"databases/backends/common/records\.py"),
    ("asyncpg", r"asyncpg/"),
    ("store.records (rows to dataclasses)", r"store/records\.py"),
    ("aiodataloader", r"aiodataloader"),
    ("uvicorn access log", r"uvicorn/logging\.py|^Logger\.|^Handler\."),
    ("httpx.AsyncClient() (SSL context)", r"AsyncClient\.__init__ \(httpx/"),
]
# Not what is measured: start-up (imports, schema building, lifespan) and shut-down.
STARTUP = (
    r"_find_and_load|_call_with_frames_removed|make_schema|create_app|LifespanOn|Server\.startup|Server\.shutdown"
    r"|_check_schema_or_exit"
)


def load(path: Path, *, must_contain: str | None = None) -> Counter[tuple[str, ...]]:
    """Stacks (root first) and their sample counts; only those with a frame matching `must_contain`."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack.strip():  # no Python frame at all (native code, idle): not attributable
            continue
        frames = tuple(_short(f) for f in stack.split(";"))
        if any(re.search(STARTUP, f) for f in frames):
            continue
        if must_contain is None or any(re.search(must_contain, f) for f in frames):
            stacks[frames] += int(count)
    return stacks


def _short(frame: str) -> str:
    # "f (/x/.venv/lib/python3.11/site-packages/databases/core.py:180)" -> "f (databases/core.py:180)"
    project = re.escape(str(Path(__file__).resolve().parent.parent) + "/")
    return re.sub(rf"\((?:[^()]*/site-packages/|[^()]*/lib/python3\.\d+/|{project})", "(", frame)


def components(stacks: Counter[tuple[str, ...]]) -> list[tuple[str, float]]:
    total = sum(stacks.values()) or 1
    found: Counter[str] = Counter()
    for frames, count in stacks.items():
        for frame in reversed(frames):
            if GENERIC.search(frame):
                continue
            label = next((name for name, pattern in COMPONENTS if re.search(pattern, frame)), None)
            if label is not None:
                found[label] += count
                break
        else:
            found["other"] += count
    return [(name, 100 * n / total) for name, n in found.most_common()]


def inclusive(stacks: Counter[tuple[str, ...]]) -> list[tuple[str, float]]:
    total = sum(stacks.values()) or 1
    shares = []
    for name, pattern in INCLUSIVE:
        n = sum(count for frames, count in stacks.items() if any(re.search(pattern, f) for f in frames))
        shares.append((name, 100 * n / total))
    return shares


def top_self(stacks: Counter[tuple[str, ...]], limit: int = 25) -> list[tuple[str, float]]:
    total = sum(stacks.values()) or 1
    leaves: Counter[str] = Counter()
    for frames, count in stacks.items():
        leaves[frames[-1]] += count
    return [(frame, 100 * n / total) for frame, n in leaves.most_common(limit)]


def summarize(path: Path, title: str, *, must_contain: str | None = None) -> dict[str, object]:
    stacks = load(path, must_contain=must_contain)
    return {
        "title": title,
        "samples": sum(stacks.values()),
        "components": components(stacks),
        "inclusive": inclusive(stacks),
        "top_self": top_self(stacks),
    }


def write_text(summary: dict[str, object], target: Path) -> None:
    lines = [f"# {summary['title']}", f"samples: {summary['samples']} (py-spy, 500 Hz, on-CPU only)", ""]
    lines.append("## Self time by component (innermost frame that is not a generic helper)")
    lines += [f"{share:6.1f} %  {name}" for name, share in summary["components"]]  # type: ignore[attr-defined]
    lines += ["", "## Inclusive time of selected work"]
    lines += [f"{share:6.1f} %  {name}" for name, share in summary["inclusive"]]  # type: ignore[attr-defined]
    lines += ["", "## Top leaf frames (self time)"]
    lines += [f"{share:6.1f} %  {frame}" for frame, share in summary["top_self"]]  # type: ignore[attr-defined]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")
