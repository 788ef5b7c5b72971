"""The PROMETHEUS provider (SPEC §6): a PromQL instant query to SWITCHOVER_PROMETHEUS_URL, whose answer must be one
number.

Placeholders. `{{deployment}}`, `{{revision}}` and `{{project}}` in the query are replaced by the target's deployment
name, revision number and project id, and `{{routes}}` by a regular expression matching exactly the ids of the
revision's routes (every route it ever had, as an alternation `id1|id2|…`, each id with RE2's metacharacters
escaped) — HAProxy names its servers after route ids, so `server=~"{{routes}}"` selects the revision's servers in
its exporter's series. All are written in one pass over the query as written (a substituted value is never scanned
again), and how each is written depends on where it stands:

- inside a "double-quoted" or 'single-quoted' PromQL string: escaped — every backslash, double quote, single quote and
  control character (Unicode category Cc: newlines, tabs, NUL, DEL, …) becomes a `\\uXXXX` escape, everything else is
  written as is. The same form is valid in both kinds of string (PromQL, like Go, rejects `\\'` inside "…" and `\\"`
  inside '…'), and no escaped value can end the string it stands in, so it is always one label value, never PromQL;
- inside a `raw string`: written as is (a raw string has no escapes); a value containing a backtick cannot be written
  there and makes the check an error;
- anywhere else (and in a `#` comment): the placeholder becomes a whole double-quoted string literal, escaped as above
  — `{deployment={{deployment}}}` works — except `{{revision}}`, an integer, which is written as its digits so that
  `vector({{revision}})` works. An unquoted value can therefore never be read as a metric name or an operator.

Any other `{{name}}` is an error, so that a typo is not silently a query for nothing; so is a value that is not valid
Unicode text (a lone surrogate has no UTF-8 form to send), and so is `{{routes}}` for a revision without routes (it
would match nothing, or under `!~` everything). Values are escaped as strings, not as regular expressions: match them
with `=`, since under `=~` a name's `.` or `+` would be regex syntax (never PromQL) — except `{{routes}}`, a regular
expression made to be matched with `=~`.

Answers. A scalar, or an instant vector of exactly one series, gives its value. NaN or ±Inf, no series, several
series, a range vector, a string, a refusal by Prometheus, an answer that is not Prometheus JSON, an unreachable
server, more than `max_bytes` of answer or no full answer within `timeout_seconds` all give a Reading without a value
that says why: measure() never raises for any of them.
"""

import asyncio
import math
import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import orjson

from scheduler.providers import Reading, Target

if TYPE_CHECKING:
    from databases import Database

TIMEOUT_SECONDS = 5.0
MAX_BYTES = 1 << 20
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
QUOTES = "\"'`"
COMMENT = "#"
PROMETHEUS_TEXT_LIMIT = 300  # of Prometheus' own error message, quoted in ours
ROUTES = "{{routes}}"
RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")


class QueryError(ValueError):
    """The query cannot be written for this target (unknown placeholder, a value a raw string cannot hold)."""


def escape(value: str) -> str:
    """`value` as the inside of a PromQL "…" or '…' string literal that reads back exactly as `value`."""
    return "".join(f"\\u{ord(c):04x}" if c in "\\\"'" or unicodedata.category(c) == "Cc" else c for c in value)


def alternation(ids: Sequence[str]) -> str:
    """A regular expression (RE2, anchored by PromQL) matching exactly the strings of `ids`."""
    return "|".join("".join("\\" + c if c in RE2_SPECIAL else c for c in i) for i in ids)


def render(query: str, target: Target, route_ids: Sequence[str] | None = None) -> str:
    """`query` with its placeholders written for `target` (the rules are in this module's docstring); `route_ids`:
    the revision's, needed only when the query has `{{routes}}`."""
    values = {
        "deployment": target.deployment_name,
        "revision": str(target.revision_number),
        "project": target.project_id,
    }
    if route_ids is not None:
        values["routes"] = alternation(route_ids)
    written: list[str] = []
    context = ""  # where the scan stands: "" (expression), a quote character (in a string) or "#" (in a comment)
    i = 0
    while i < len(query):
        placeholder = PLACEHOLDER.match(query, i)
        if placeholder:
            written.append(_write(placeholder.group(1), values, context))
            i = placeholder.end()
            continue
        c = query[i]
        written.append(c)
        i += 1
        if context == "":
            context = c if c in QUOTES or c == COMMENT else ""
        elif context == COMMENT:
            context = "" if c == "\n" else COMMENT
        elif c == "\\" and context in ('"', "'") and i < len(query):
            # An escape in the query as written: the character after the backslash cannot end the string.
            written.append(query[i])
            i += 1
        elif c == context:
            context = ""
    return "".join(written)


def _write(name: str, values: dict[str, str], context: str) -> str:
    if name == "routes" and name not in values:
        raise QueryError("{{routes}} needs the revision's route ids, which were not read")
    if name not in values:
        known = ", ".join(f"{{{{{known}}}}}" for known in (*values, "routes"))
        raise QueryError(f"unknown placeholder {{{{{name}}}}} in the query (known: {known})")
    value = values[name]
    if context == "`":
        if "`" in value:
            raise QueryError(f"the {name} contains a backtick and cannot be written inside a `raw string`")
        return value
    if context in ('"', "'"):
        return escape(value)
    return value if name == "revision" else f'"{escape(value)}"'


def _query_url(base_url: str | None) -> str | Reading:
    if base_url is None:
        return Reading.error("SWITCHOVER_PROMETHEUS_URL is not set: no Prometheus to ask")
    try:
        parts = urlsplit(base_url)
        port = parts.port  # raises ValueError unless absent or 0–65535
    except ValueError:
        return Reading.error("SWITCHOVER_PROMETHEUS_URL is not a valid URL")
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        return Reading.error("SWITCHOVER_PROMETHEUS_URL must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        return Reading.error("SWITCHOVER_PROMETHEUS_URL must not have a query or a fragment")
    return base_url.rstrip("/") + "/api/v1/query"


class _TooLarge(Exception):
    pass


async def _get(
    http: httpx.AsyncClient, url: str, query: str, timeout_seconds: float, max_bytes: int
) -> tuple[int, bytes]:
    """Status and body of GET url?query=…, read as a stream so that an endless answer is cut at max_bytes."""
    async with http.stream("GET", url, params={"query": query}, timeout=timeout_seconds) as response:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise _TooLarge
        body = bytearray()
        async for chunk in response.aiter_bytes():  # decompressed: the bound is on what we would parse
            body += chunk
            if len(body) > max_bytes:
                raise _TooLarge
        return response.status_code, bytes(body)


async def measure(
    http: httpx.AsyncClient,
    base_url: str | None,
    query: str,
    target: Target,
    *,
    timeout_seconds: float = TIMEOUT_SECONDS,
    max_bytes: int = MAX_BYTES,
    db: "Database | None" = None,
) -> Reading:
    """The value of `query` for `target` at Prometheus `base_url` now, or why there is none. Never raises for what the
    server answers or fails to answer. `db`: where the route ids of `{{routes}}` are read (only if the query has it)."""
    url = _query_url(base_url)
    if isinstance(url, Reading):
        return url
    if not query.strip():
        return Reading.error("the PromQL query is empty")
    route_ids = None
    if ROUTES in query and db is not None:
        from store.analysis import route_ids_of_revision  # the store only when a query needs it

        route_ids = await route_ids_of_revision(db, target.revision_id)
        if not route_ids:
            return Reading.error(f"revision {target.revision_number} has no routes for {{{{routes}}}} to match")
    try:
        promql = render(query, target, route_ids)
        promql.encode()
    except QueryError as exc:
        return Reading.error(str(exc))
    except UnicodeEncodeError:  # a lone surrogate, in the query or a value: there is no UTF-8 (so no HTTP) form
        return Reading.error("the query is not valid Unicode text once its placeholders are written")
    host = urlsplit(url).netloc.rpartition("@")[2]  # never quote credentials of the URL in a message
    try:
        # httpx's timeout bounds each read; this bounds the whole exchange, so a slow drip cannot outlast it either.
        async with asyncio.timeout(timeout_seconds):
            status, body = await _get(http, url, promql, timeout_seconds, max_bytes)
    except (TimeoutError, httpx.TimeoutException):
        return Reading.error(f"Prometheus at {host} gave no full answer within {timeout_seconds:g} s")
    except _TooLarge:
        return Reading.error(f"Prometheus at {host} answered more than {max_bytes} bytes")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return Reading.error(f"cannot reach Prometheus at {host}: {type(exc).__name__}: {exc}")
    return reading_of(status, body)


def reading_of(status: int, body: bytes) -> Reading:
    """Interpret an answer of /api/v1/query (https://prometheus.io/docs/prometheus/latest/querying/api/)."""
    try:
        answer = orjson.loads(body)  # orjson bounds nesting depth, so a hostile answer cannot exhaust the stack
    except ValueError:
        return Reading.error(f"Prometheus answered HTTP {status} with something that is not JSON")
    if not isinstance(answer, dict):
        return Reading.error(f"Prometheus answered HTTP {status} with JSON that is not a query result")
    if answer.get("status") != "success":
        reason = f"{answer.get('errorType', 'error')}: {answer.get('error', 'no reason given')}"
        return Reading.error(f"Prometheus refused the query (HTTP {status}): {reason[:PROMETHEUS_TEXT_LIMIT]}")
    if status != 200:
        return Reading.error(f"Prometheus answered HTTP {status}")
    data = answer.get("data")
    if not isinstance(data, dict):
        return Reading.error("Prometheus answered a result without data")
    return _reading_of_result(data.get("resultType"), data.get("result"))


def _reading_of_result(kind: Any, result: Any) -> Reading:
    if kind == "scalar":
        return _reading_of_sample(result)
    if kind != "vector":
        return Reading.error(f"the query gives a {kind}, not a scalar or an instant vector")
    if not isinstance(result, list):
        return Reading.error("Prometheus answered a vector that is not a list")
    if not result:
        return Reading.error("no data: the query matches no series")
    if len(result) > 1:
        return Reading.error(f"the query gives {len(result)} series, not one: aggregate them (e.g. with sum)")
    series = result[0]
    if not isinstance(series, dict) or "value" not in series:
        return Reading.error("the query's one series has no plain value (a native histogram?)")
    return _reading_of_sample(series["value"])


def _reading_of_sample(sample: Any) -> Reading:
    """A [timestamp, "value"] pair: Prometheus writes sample values as strings ("NaN" and "+Inf" included)."""
    if not (isinstance(sample, list) and len(sample) == 2 and isinstance(sample[1], str)):
        return Reading.error("Prometheus answered a sample that is not [time, value]")
    try:
        value = float(sample[1])
    except ValueError:
        return Reading.error(f"Prometheus answered {sample[1][:40]!r}, not a number")
    if not math.isfinite(value):
        return Reading.error(f"the query gives {sample[1]}, not a finite number")
    return Reading(value, f"Prometheus answered {value:g}")
