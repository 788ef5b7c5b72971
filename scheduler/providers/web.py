"""The WEB provider: GET a URL, take the number at a JSONPath of its JSON answer.

The URL is the check's, with `{{deployment}}`, `{{revision}}` and `{{project}}` replaced (percent-encoded). Only
http(s); every address the host resolves to is checked (link-local, unspecified, multicast and reserved never,
loopback only when allowed by `SWITCHOVER_ALLOW_LOOPBACK_URLS`, an IPv4 address written as IPv6 as itself) and the
request is pinned to the vetted address. The lookup and the answer are bounded in time, the answer in size.
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
from store.validation import address_refusal

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


async def vetted_address(url: str, *, allow_loopback: bool) -> str:
    """The one address the GET will connect to: every address the host resolves to must be allowed (else
    ValueError says why), and the request is then pinned to it, so that a second lookup cannot answer otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url[:200]} is not an http(s) URL")
    default_port = 443 if parts.scheme == "https" else 80
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, parts.port or default_port, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise ValueError(f"cannot resolve {parts.hostname}: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        refusal = address_refusal(address, allow_loopback=allow_loopback)
        if refusal:
            raise ValueError(f"{parts.hostname} resolves to {refusal}")
    if not addresses:
        raise ValueError(f"{parts.hostname} resolves to no address")
    return str(addresses[0])


async def measure(
    http: httpx.AsyncClient, url: str, json_path: str | None, target: Target, *, allow_loopback: bool
) -> Reading:
    url = url_for(url, target)
    try:
        body = await asyncio.wait_for(_get(http, url, allow_loopback=allow_loopback), TIMEOUT_SECONDS)
    except TimeoutError:
        return Reading.error(f"GET {url[:200]} took longer than {TIMEOUT_SECONDS:.0f} s")
    except httpx.HTTPError as exc:
        return Reading.error(f"GET {url[:200]} failed: {type(exc).__name__}: {exc}"[:500])
    except ValueError as exc:  # a refused address, a status or size refusal
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


async def _get(http: httpx.AsyncClient, url: str, *, allow_loopback: bool) -> bytes:
    """The answer's body, from the vetted address (the name still in Host, and in SNI for https), bounded in size."""
    address = await vetted_address(url, allow_loopback=allow_loopback)
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    pinned = parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host).geturl()
    headers = {"host": parts.netloc.rpartition("@")[2]}
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    async with http.stream("GET", pinned, headers=headers, extensions=extensions, follow_redirects=False) as answer:
        if answer.status_code != 200:
            raise ValueError(f"GET {url[:200]} answered {answer.status_code}")
        body = bytearray()
        async for chunk in answer.aiter_bytes():
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise ValueError(f"GET {url[:200]} answered more than {MAX_ANSWER_BYTES} bytes")
        return bytes(body)
