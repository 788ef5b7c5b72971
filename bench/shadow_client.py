"""Requests through one proxy per variant, in short blocks that take turns, in a process of its own:
`python -m bench.shadow_client CONFIG.json RESULT.json`.

CONFIG: `targets` {variant: [port, path]}, `body`, `warmup` requests per variant, `seconds` of measured load per
variant, in blocks of `block_seconds`. One request at a time; each block sends only to its variant, so whatever that
proxy does after answering (a shadow copy) competes with its own next request, and the variants take turns in an order
that rotates from round to round (drift of the machine spreads evenly). Every answer must be a 200 from blue
(revision 1): a caller never sees green.
"""

import asyncio
import json
import math
import sys
import time
from typing import Any

from bench.common import summary
from bench.http import Connection


async def main(config: dict[str, Any]) -> dict[str, Any]:
    targets = {name: (int(port), path) for name, (port, path) in config["targets"].items()}
    connections = {name: Connection("127.0.0.1", port) for name, (port, _) in targets.items()}
    names = sorted(targets)
    times: dict[str, list[float]] = {name: [] for name in names}
    body = config["body"].encode()

    async def one(name: str) -> float:
        started = time.perf_counter()
        status, payload = await connections[name].request("POST", targets[name][1], body)
        elapsed = time.perf_counter() - started
        assert status == 200 and b'"revision":1' in payload, (name, status, payload[:200])
        return elapsed

    try:
        for _ in range(config["warmup"]):
            for name in names:
                await one(name)
        blocks = math.ceil(config["seconds"] / config["block_seconds"])
        for block in range(blocks):
            shift = block % len(names)
            for name in names[shift:] + names[:shift]:
                until = time.monotonic() + config["block_seconds"]
                while time.monotonic() < until:
                    times[name].append(await one(name))
    finally:
        for connection in connections.values():
            await connection.close()
    return {"latency_ms": {name: summary(values) for name, values in times.items()}, "blocks": blocks}


if __name__ == "__main__":
    config = json.loads(open(sys.argv[1]).read())
    result = asyncio.run(main(config))
    with open(sys.argv[2], "w") as out:
        json.dump(result, out)
