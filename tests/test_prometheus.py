"""The PROMETHEUS metric provider against a real Prometheus (Debian's 2.42) scraping a real Switchover subgraph
process every second, and against a small misbehaving HTTP server for what Prometheus itself never does.

Prometheus scrapes the subgraph's /metrics twice, as two targets whose series carry the labels the proxy's metrics
carry (deployment, revision, project): once for `sentiment` and once for a deployment whose name holds every character
that PromQL escaping must handle. The subgraph answered exactly 3 GraphQL requests with 200 and 2 with 400 before
Prometheus started, so every series' value is known.
"""

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from scheduler.providers import Reading, Target
from scheduler.providers.prometheus import MAX_BYTES, escape, measure, render
from switchover.settings import from_environment
from tests.conftest import create_database, drop_database, url_of
from tests.live_server import serving
from tests.prometheus_helpers import free_port, running_prometheus, stop

PROJECT = "6f1c2a7e-0d4b-4f7e-9a51-3c0e8d2b9a10"
SENTIMENT = Target(
    deployment_id="568eef1b-1ced-4d5c-b74f-f12712848e2f",
    deployment_name="sentiment",
    project_id=PROJECT,
    revision_id="591f1975-dcd0-40d5-88a4-20536198264b",
    revision_number=3,
    interval_seconds=10,
)
# A scraped label value with both quote kinds, a backslash, a backtick, a newline, a tab, a comment sign and braces.
ODD_NAME = "odd\"}) or vector(1) # \\ ' ` \n\t{a='b'} end"
ODD = replace(SENTIMENT, deployment_name=ODD_NAME, revision_number=4)
# Not scraped: if it reached PromQL as written, `sum(…{deployment="{{deployment}}"})` would become `… or vector(1)`.
HOSTILE = replace(SENTIMENT, deployment_name='x"}) or vector(1) or sum(foo{a="')
HOSTILE_SINGLE = replace(SENTIMENT, deployment_name="x'}) or vector(1) or sum(foo{a='")
# As unescaped text this one would break the query rather than change it; escaped it must simply match nothing.
BROKEN = replace(SENTIMENT, deployment_name='x"}) or vector(1) or foo{a="')
OK_REQUESTS, BAD_REQUESTS = 3, 2
SERIES = 'switchover_graphql_requests_total{status="200", deployment="{{deployment}}", revision="{{revision}}"}'


def labels_of(target: Target) -> dict[str, str]:
    return {
        "deployment": target.deployment_name,
        "revision": str(target.revision_number),
        "project": target.project_id,
    }


def wait_for_health(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, f"the subgraph exited with {process.returncode}"
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} not ready in 60 s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def subgraph(template_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `switchover serve` process (its own metrics registry: the counts are exactly the requests made here)."""
    database = create_database(template=template_database)
    port = free_port()
    log_path = tmp_path_factory.mktemp("subgraph") / "subgraph.log"
    env = {**os.environ, "DATABASE_URL": url_of(database)}
    command = [sys.executable, "-m", "switchover", "serve", "--insecure", "--port", str(port)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, process)
        for document, status in [("{ __typename }", 200)] * OK_REQUESTS + [("{", 400)] * BAD_REQUESTS:
            assert httpx.post(f"{url}/graphql", json={"query": document}, timeout=10).status_code == status
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)
        drop_database(database)


@pytest.fixture(scope="module")
def prometheus(subgraph: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("prometheus")
    with running_prometheus(directory, [(subgraph, labels_of(SENTIMENT)), (subgraph, labels_of(ODD))]) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def error_of(reading: Reading) -> str:
    assert reading.value is None, f"expected an error, got {reading}"
    return reading.message


# Given a real Prometheus


@pytest.mark.parametrize("query", ["scalar(vector(42))", "vector(42)", "42"])
async def test_a_scalar_or_a_one_element_vector_gives_its_number(
    prometheus: str, http: httpx.AsyncClient, query: str
) -> None:
    assert await measure(http, prometheus, query, SENTIMENT) == Reading(42.0, "Prometheus answered 42")


async def test_one_series_of_scraped_data_is_found_through_the_placeholders(
    prometheus: str, http: httpx.AsyncClient
) -> None:
    query = SERIES.replace('status="200"', 'status="200", project="{{project}}"')
    assert (await measure(http, prometheus, query, SENTIMENT)).value == OK_REQUESTS
    assert (await measure(http, prometheus, f"sum({SERIES.replace('200', '400')})", SENTIMENT)).value == BAD_REQUESTS


@pytest.mark.parametrize(
    "query",
    [
        SERIES,
        SERIES.replace('"{{deployment}}"', "'{{deployment}}'"),
        SERIES.replace('"{{deployment}}"', "{{deployment}}"),  # unquoted: written as a whole string literal
        f'# the deployment\'s "{{{{deployment}}}}" series, \n{SERIES}',  # a comment, with quotes, is not a string
        f'sum by (deployment) ({SERIES}) # "{{{{deployment}}}}"',
    ],
)
async def test_every_character_of_a_name_reaches_prometheus_exactly(
    prometheus: str, http: httpx.AsyncClient, query: str
) -> None:
    # Real scraped data labelled with the odd name: only an exact round trip of the escaping finds the series.
    assert (await measure(http, prometheus, query, ODD)).value == OK_REQUESTS


async def test_a_hostile_name_cannot_change_the_query(prometheus: str, http: httpx.AsyncClient) -> None:
    query = 'sum(switchover_graphql_requests_total{deployment="{{deployment}}"})'
    naive = query.replace("{{deployment}}", HOSTILE.deployment_name)
    answer = (await http.get(f"{prometheus}/api/v1/query", params={"query": naive})).json()
    assert answer["data"]["result"][0]["value"][1] == "1"  # what an unescaped substitution would measure

    for target, template in [
        (HOSTILE, query),
        (HOSTILE, query.replace('"{{deployment}}"', "{{deployment}}")),
        (HOSTILE_SINGLE, query.replace('"{{deployment}}"', "'{{deployment}}'")),
        (HOSTILE, query.replace('"{{deployment}}"', "'{{deployment}}'")),
        (HOSTILE_SINGLE, query),
        (BROKEN, query),
    ]:
        assert "no data" in error_of(await measure(http, prometheus, template, target)), (target, template)


async def test_a_raw_string_takes_a_name_as_is_unless_it_holds_a_backtick(
    prometheus: str, http: httpx.AsyncClient
) -> None:
    query = SERIES.replace('"{{deployment}}"', "`{{deployment}}`")
    assert (await measure(http, prometheus, query, SENTIMENT)).value == OK_REQUESTS
    assert "backtick" in error_of(await measure(http, prometheus, query, ODD))


async def test_the_revision_outside_quotes_is_a_number(prometheus: str, http: httpx.AsyncClient) -> None:
    assert (await measure(http, prometheus, "vector({{revision}}) * 2", SENTIMENT)).value == 6


async def test_several_series_are_an_error(prometheus: str, http: httpx.AsyncClient) -> None:
    message = error_of(await measure(http, prometheus, 'switchover_graphql_requests_total{status="200"}', SENTIMENT))
    assert "2 series, not one" in message


async def test_no_data_is_an_error(prometheus: str, http: httpx.AsyncClient) -> None:
    query = SERIES.replace("200", "503")
    assert error_of(await measure(http, prometheus, query, SENTIMENT)) == "no data: the query matches no series"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('scalar(up{job="nobody"})', "NaN, not a finite number"),
        ("vector(+Inf)", "+Inf, not a finite number"),
        ("-vector(Inf)", "-Inf, not a finite number"),
        ("up[1m]", "gives a matrix"),
        ('"just text"', "gives a string"),
        ("sum(", "Prometheus refused the query (HTTP 400): bad_data: "),
        ("{{deploymnet}}", "unknown placeholder {{deploymnet}}"),
        ("  ", "the PromQL query is empty"),
    ],
)
async def test_what_is_not_one_finite_number_is_an_error(
    prometheus: str, http: httpx.AsyncClient, query: str, expected: str
) -> None:
    assert expected in error_of(await measure(http, prometheus, query, SENTIMENT))


# Given no Prometheus, or a server that misbehaves


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        (None, "SWITCHOVER_PROMETHEUS_URL is not set"),
        ("ftp://127.0.0.1:21", "must be an http:// or https:// URL"),
        ("file:///etc/passwd", "must be an http:// or https:// URL"),
        ("http://127.0.0.1:9090/?a=b", "must not have a query"),
        ("http://[::1", "is not a valid URL"),
        ("http://127.0.0.1:99999", "is not a valid URL"),
    ],
)
async def test_a_missing_or_non_http_url_is_an_error(
    http: httpx.AsyncClient, base_url: str | None, expected: str
) -> None:
    assert expected in error_of(await measure(http, base_url, "vector(1)", SENTIMENT))


async def test_an_unreachable_server_is_an_error(http: httpx.AsyncClient) -> None:
    port = free_port()  # nothing listens there
    message = error_of(await measure(http, f"http://user:secret@127.0.0.1:{port}", "vector(1)", SENTIMENT))
    assert message.startswith(f"cannot reach Prometheus at 127.0.0.1:{port}: ConnectError")
    assert "secret" not in message


async def slow(request: Request) -> Response:
    await asyncio.sleep(1)  # past the test's timeout; bounded, so the server stops by itself
    return Response(b'{"status":"success","data":{"resultType":"scalar","result":[0,"1"]}}')


async def drip(request: Request) -> Response:
    async def bytes_one_by_one() -> AsyncIterator[bytes]:
        for _ in range(40):  # every read is quick; the whole answer is not
            yield b" "
            await asyncio.sleep(0.1)

    return StreamingResponse(bytes_one_by_one(), media_type="application/json")


async def endless(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1024):  # 64 MiB at most, without a content-length
            yield b" " * 65536

    return StreamingResponse(chunks(), media_type="application/json")


async def declared_large(request: Request) -> Response:
    return Response(b" " * (MAX_BYTES + 1), media_type="application/json")


async def not_json(request: Request) -> Response:
    return PlainTextResponse("<html>a login page</html>")


async def down(request: Request) -> Response:
    return PlainTextResponse("upstream unavailable", status_code=502)


async def not_prometheus(request: Request) -> Response:
    return Response(b"[1, 2, 3]", media_type="application/json")


async def histogram(request: Request) -> Response:
    body = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[0,{}]}]}}'
    return Response(body, media_type="application/json")


@pytest.fixture
async def misbehaving() -> AsyncIterator[str]:
    """One base URL per misbehaviour: {url}/slow answers /slow/api/v1/query late, and so on."""
    handlers = [slow, drip, endless, declared_large, not_json, down, not_prometheus, histogram]
    app = Starlette(routes=[Route(f"/{h.__name__}/api/v1/query", h) for h in handlers])
    async with serving(app) as url:
        yield url


@pytest.mark.parametrize("behaviour", ["slow", "drip"])
async def test_an_answer_not_complete_within_the_timeout_is_an_error(
    misbehaving: str, http: httpx.AsyncClient, behaviour: str
) -> None:
    started = time.monotonic()
    reading = await measure(http, f"{misbehaving}/{behaviour}", "vector(1)", SENTIMENT, timeout_seconds=0.5)
    assert error_of(reading) == "Prometheus at 127.0.0.1:" + misbehaving.rsplit(":", 1)[1] + (
        " gave no full answer within 0.5 s"
    )
    assert time.monotonic() - started < 4  # cut at its 0.5 s deadline; generous for a loaded machine


@pytest.mark.parametrize("behaviour", ["endless", "declared_large"])
async def test_an_answer_past_the_size_bound_is_an_error(
    misbehaving: str, http: httpx.AsyncClient, behaviour: str
) -> None:
    message = error_of(await measure(http, f"{misbehaving}/{behaviour}", "vector(1)", SENTIMENT))
    assert message.endswith(f"answered more than {MAX_BYTES} bytes")


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("not_json", "Prometheus answered HTTP 200 with something that is not JSON"),
        ("down", "Prometheus answered HTTP 502 with something that is not JSON"),
        ("not_prometheus", "Prometheus answered HTTP 200 with JSON that is not a query result"),
        ("histogram", "the query's one series has no plain value (a native histogram?)"),
    ],
)
async def test_an_answer_that_is_not_a_prometheus_number_is_an_error(
    misbehaving: str, http: httpx.AsyncClient, behaviour: str, expected: str
) -> None:
    assert error_of(await measure(http, f"{misbehaving}/{behaviour}", "vector(1)", SENTIMENT)) == expected


# The escaping rule itself


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("sentiment", "sentiment"),
        ('a"b', "a\\u0022b"),
        ("a'b", "a\\u0027b"),
        ("a\\b", "a\\u005cb"),
        ("a\nb\r\t\x00\x7f\x85", "a\\u000ab\\u000d\\u0009\\u0000\\u007f\\u0085"),
        ("a`b é 🙂", "a`b é 🙂"),
    ],
)
def test_escape_writes_quotes_backslashes_and_control_characters_as_unicode_escapes(value: str, escaped: str) -> None:
    assert escape(value) == escaped


@pytest.mark.parametrize(
    ("query", "rendered"),
    [
        ('{d="{{deployment}}"}', '{d="x\\u0022y"}'),
        ("{d='{{deployment}}'}", "{d='x\\u0022y'}"),
        ("{d={{deployment}}}", '{d="x\\u0022y"}'),
        ("{d=`{{deployment}}`}", '{d=`x"y`}'),
        ('{d="\\"{{deployment}}"}', '{d="\\"x\\u0022y"}'),  # an escaped quote of the query does not end its string
        ('# "{{deployment}}\n{{revision}}', '# ""x\\u0022y"\n3'),  # a comment is not a string
        ('"{{revision}}" {{revision}} {{project}}', f'"3" 3 "{PROJECT}"'),
    ],
)
def test_render_writes_each_placeholder_for_where_it_stands(query: str, rendered: str) -> None:
    assert render(query, replace(SENTIMENT, deployment_name='x"y')) == rendered


async def test_a_value_that_is_not_unicode_text_is_an_error(http: httpx.AsyncClient) -> None:
    target = replace(SENTIMENT, deployment_name="a\ud800")
    assert "not valid Unicode" in error_of(await measure(http, "http://127.0.0.1:9", '{d="{{deployment}}"}', target))


def test_the_odd_name_holds_every_character_the_escaping_handles() -> None:
    # Otherwise the round-trip test against Prometheus would prove less than it says.
    assert all(c in ODD_NAME for c in "\"'\\`\n\t#{}")


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, None), ("", None), ("http://127.0.0.1:9090", "http://127.0.0.1:9090")]
)
def test_the_setting_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: str | None
) -> None:
    if raw is None:
        monkeypatch.delenv("SWITCHOVER_PROMETHEUS_URL", raising=False)
    else:
        monkeypatch.setenv("SWITCHOVER_PROMETHEUS_URL", raw)
    assert from_environment().prometheus_url == expected


@pytest.mark.parametrize("raw", ["ftp://127.0.0.1", "127.0.0.1:9090", "http://[::1"])
def test_a_setting_that_is_not_an_http_url_stops_the_process(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("SWITCHOVER_PROMETHEUS_URL", raw)
    with pytest.raises(SystemExit, match="SWITCHOVER_PROMETHEUS_URL must be an http"):
        from_environment()
