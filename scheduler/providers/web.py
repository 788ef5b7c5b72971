"""The WEB provider: GET a URL, take the number at a JSONPath of its JSON answer.

The URL is the check's, with `{{deployment}}`, `{{revision}}` and `{{project}}` replaced (percent-encoded). Only
http(s); the host's addresses are checked before connecting: link-local never, loopback only when allowed
(`SWITCHOVER_ALLOW_LOOPBACK_URLS`). The answer is bounded in time and size.
"""

import asyncio
import ipaddress
import json
import math
import socket
from urllib.parse import quote, urlsplit

import httpx
import jsonpath_ng

from scheduler.providers import Reading, Target

TIMEOUT_SECONDS = 5.0
MAX_ANSWER_BYTES = 1 << 20


def url_for(template: str, target: Target) -> str:
    values = {
        "deployment": target.deployment_name,
        "revision": str(target.revision_number),
        "project": target.project_id,
    }
    for name, value in values.items():
        template = template.replace("{{" + name + "}}", quote(value, safe=""))
    return template


async def refused_address(url: str, *, allow_loopback: bool) -> str | None:
    """Why the URL's host may not be reached, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url[:200]} is not an http(s) URL"
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 80, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {parts.hostname}: {exc}"
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_link_local:
            return f"{parts.hostname} resolves to the link-local address {address}, which is never allowed"
        if address.is_loopback and not allow_loopback:
            return (
                f"{parts.hostname} resolves to the loopback address {address} (SWITCHOVER_ALLOW_LOOPBACK_URLS is off)"
            )
    return None


async def measure(
    http: httpx.AsyncClient, url: str, json_path: str | None, target: Target, *, allow_loopback: bool
) -> Reading:
    url = url_for(url, target)
    refusal = await refused_address(url, allow_loopback=allow_loopback)
    if refusal:
        return Reading.error(refusal)
    try:
        body = await asyncio.wait_for(_get(http, url), TIMEOUT_SECONDS)
    except TimeoutError:
        return Reading.error(f"GET {url[:200]} took longer than {TIMEOUT_SECONDS:.0f} s")
    except httpx.HTTPError as exc:
        return Reading.error(f"GET {url[:200]} failed: {type(exc).__name__}: {exc}"[:500])
    except ValueError as exc:  # a status or size refusal
        return Reading.error(str(exc))
    try:
        document = json.loads(body)
    except ValueError:
        return Reading.error(f"GET {url[:200]} did not answer JSON")
    found = [m.value for m in jsonpath_ng.parse(json_path or "$").find(document)]
    if len(found) != 1:
        return Reading.error(f"{json_path or '$'} found {len(found)} values in the answer, not one")
    value = found[0]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return Reading.error(f"{json_path or '$'} is {json.dumps(value)[:100]}, not a number")
    try:
        number = float(value)
    except ValueError:
        return Reading.error(f"{json_path or '$'} is {value[:100]!r}, not a number")
    if not math.isfinite(number):
        return Reading.error(f"{json_path or '$'} is {number}, not a finite number")
    return Reading(number, f"{json_path or '$'} = {number:g}")


async def _get(http: httpx.AsyncClient, url: str) -> bytes:
    async with http.stream("GET", url, follow_redirects=False) as answer:
        if answer.status_code != 200:
            raise ValueError(f"GET {url[:200]} answered {answer.status_code}")
        body = bytearray()
        async for chunk in answer.aiter_bytes():
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise ValueError(f"GET {url[:200]} answered more than {MAX_ANSWER_BYTES} bytes")
        return bytes(body)
