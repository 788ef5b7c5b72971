"""Requests through two proxies, interleaved one at a time, in a process of its own:
`python -m bench.proxy_client CONFIG.json RESULT.json`.

CONFIG: `ports` {variant: port}, `path`, `body`, `warmup` and `requests` per variant. Each round sends one request
to every variant, in an order that alternates from round to round; every answer must be a 200 from a replica.
"""

import asyncio
import json
import sys
import time
from typing import Any

from bench.common import summary
from bench.http import Connection


async def main(config: dict[str, Any]) -> dict[str, Any]:
    connections = {name: Connection("127.0.0.1", port) for name, port in config["ports"].items()}
    names = sorted(connections)
    times: dict[str, list[float]] = {name: [] for name in names}
    body = config["body"].encode()
    try:
        for i in range(config["warmup"] + config["requests"]):
            for name in names if i % 2 else reversed(names):
                started = time.perf_counter()
                status, payload = await connections[name].request("POST", config["path"], body)
                elapsed = time.perf_counter() - started
                assert status == 200 and b'"revision":1' in payload, (name, status, payload[:200])
                if i >= config["warmup"]:
                    times[name].append(elapsed)
    finally:
        for connection in connections.values():
            await connection.close()
    return {name: summary(values) for name, values in times.items()}


if __name__ == "__main__":
    config = json.loads(open(sys.argv[1]).read())
    result = asyncio.run(main(config))
    with open(sys.argv[2], "w") as out:
        json.dump(result, out)
