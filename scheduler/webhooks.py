"""Webhook deliveries as scheduler steps: lease one due delivery, POST it, decide, record (SPEC §8).

At least once: a delivery is leased, not taken; a scheduler that dies while posting leaves it to the next one once
the lease ends, which sends the same body with the same `x-switchover-delivery` id. The decision (delivered, retry
after a backoff with jitter, or dead-lettered) is a pure function of the attempt.
"""

import asyncio
import hashlib
import hmac
import json
import random
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from databases import Database

from scheduler.providers import Providers
from scheduler.providers.web import vetted_address
from store import webhooks
from store.models import WebhookDeliveryStatus

TIMEOUT_SECONDS = 5.0  # the whole attempt: lookup, connect, send, answer
LEASE_SECONDS = 15.0  # longer than an attempt and its record: a live scheduler never loses its lease
MAX_ANSWER_BYTES = 1024  # read only to say what a refusal answered
MAX_ATTEMPTS = 10  # about four minutes of retries at most, then the delivery is dead-lettered
FIRST_RETRY_SECONDS = 2.0  # the first retry comes 1–2 s after the first failure (SPEC: within 5 s)
MAX_RETRY_SECONDS = 60.0
SIGNATURE_HEADER = "x-switchover-signature"
DELIVERY_HEADER = "x-switchover-delivery"


@dataclass(frozen=True)
class Attempt:
    """What one POST gave: the answer's status (None: no answer) and, unless it was a 2xx, why it failed."""

    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Next:
    status: WebhookDeliveryStatus
    retry_in_seconds: float = 0.0


def retry_delay(attempts: int, jitter: float) -> float:
    """Seconds before the next attempt after `attempts` failed ones: doubling from FIRST_RETRY_SECONDS, capped at
    MAX_RETRY_SECONDS, and drawn in the upper half of that (`jitter` in [0, 1)) so that receivers that failed
    together are not all retried at the same instant."""
    ceiling = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** (max(1, attempts) - 1))
    return ceiling * (0.5 + 0.5 * jitter)


def decide(attempts: int, attempt: Attempt, jitter: float) -> Next:
    if attempt.delivered:
        return Next(WebhookDeliveryStatus.DELIVERED)
    if attempts >= MAX_ATTEMPTS:
        return Next(WebhookDeliveryStatus.DEAD)
    return Next(WebhookDeliveryStatus.PENDING, retry_delay(attempts, jitter))


def body_of(due: webhooks.Due) -> bytes:
    """The same bytes on every attempt: the stored payload plus the delivery id, keys sorted."""
    return json.dumps({**due.payload, "deliveryId": due.id}, sort_keys=True, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post(http: httpx.AsyncClient, due: webhooks.Due, *, allow_loopback: bool) -> Attempt:
    body = body_of(due)
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: signature(due.secret, body),
        DELIVERY_HEADER: due.id,
        "user-agent": "switchover-webhooks",
    }
    try:
        return await asyncio.wait_for(_post(http, due.url, body, headers, allow_loopback), TIMEOUT_SECONDS)
    except TimeoutError:
        return Attempt(None, f"no answer within {TIMEOUT_SECONDS:.0f} s")
    except httpx.HTTPError as exc:
        return Attempt(None, f"{type(exc).__name__}: {exc}"[:500])
    except ValueError as exc:  # a refused address
        return Attempt(None, str(exc)[:500])
    except Exception as exc:  # anything else is this attempt's failure too: recorded, so the limit still applies
        return Attempt(None, f"{type(exc).__name__}: {exc}"[:500])


async def _post(
    http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], allow_loopback: bool
) -> Attempt:
    """To the vetted address (the name kept in Host, and in SNI for https), as the WEB provider does; at most
    MAX_ANSWER_BYTES of the answer are read."""
    address = await vetted_address(url, allow_loopback=allow_loopback)
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    pinned = parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host).geturl()
    headers = {**headers, "host": parts.netloc.rpartition("@")[2]}
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    async with http.stream(
        "POST", pinned, content=body, headers=headers, extensions=extensions, follow_redirects=False
    ) as answer:
        if 200 <= answer.status_code < 300:
            return Attempt(answer.status_code, None)
        start = bytearray()
        async for chunk in answer.aiter_bytes():
            start += chunk
            if len(start) >= MAX_ANSWER_BYTES:
                break
        said = bytes(start[:200]).decode(errors="replace").strip()
        return Attempt(answer.status_code, f"answered {answer.status_code}" + (f": {said}" if said else ""))


async def step(db: Database, providers: Providers) -> bool:
    """Send one due delivery; False when none is due."""
    due = await webhooks.claim_due(db, lease_seconds=LEASE_SECONDS)
    if due is None:
        return False
    attempt = await post(providers.http, due, allow_loopback=providers.allow_loopback)
    decided = decide(due.attempts, attempt, random.random())
    await webhooks.record_attempt(
        db,
        due,
        status=decided.status,
        error=attempt.error,
        status_code=attempt.status_code,
        retry_in_seconds=decided.retry_in_seconds,
    )
    return True
