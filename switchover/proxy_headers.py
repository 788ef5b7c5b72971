"""Which headers a proxy passes on (RFC 9110 §7.6.1): hop-by-hop headers stay on their hop, `X-Forwarded-For` gets
the proxy's own peer appended and `X-Forwarded-Proto` is set."""

from collections.abc import Iterable

RawHeaders = list[tuple[bytes, bytes]]

# Always hop-by-hop. `Host` and `Content-Length` are not, but the client library writes both for the new hop (Host
# names the replica; the length follows the body it actually sends).
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"proxy-connection"}
)


def _dropped(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """The hop-by-hop names, with every header `Connection` names."""
    dropped = set(HOP_BY_HOP)
    for name, value in headers:
        if name.lower() == b"connection":
            dropped.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return dropped


def end_to_end(headers: Iterable[tuple[bytes, bytes]], *, also: frozenset[bytes] = frozenset()) -> RawHeaders:
    """`headers` without hop-by-hop ones (nor any in `also`, lower case); names lower-cased."""
    headers = list(headers)
    dropped = _dropped(headers) | also
    kept = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in dropped or lowered.startswith(b"proxy-"):
            continue
        kept.append((lowered, value))
    return kept


def forwarded(headers: RawHeaders, *, peer: str | None, scheme: str) -> RawHeaders:
    """Request headers for the replica: `X-Forwarded-For` with `peer` appended to what earlier proxies wrote,
    `X-Forwarded-Proto` set to how the caller reached this proxy."""
    chain = [value for name, value in headers if name == b"x-forwarded-for"]
    out = [(n, v) for n, v in headers if n not in (b"x-forwarded-for", b"x-forwarded-proto")]
    if peer is not None:
        chain.append(peer.encode())
    if chain:
        out.append((b"x-forwarded-for", b", ".join(chain)))
    out.append((b"x-forwarded-proto", scheme.encode()))
    return out


def value_of(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None
