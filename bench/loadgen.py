"""Load generator, run in a process of its own: `python -m bench.loadgen CONFIG.json RESULT.json`.

CONFIG: host, port, concurrency, warmup and duration (seconds), and `requests`: a weighted mix of request kinds,
each with variants ({method, path, body}) picked at random. Each of `concurrency` clients keeps one connection and
sends its next request when the last is answered (closed loop). Only requests that complete inside the measuring
window (after the warm-up) count. With `start_at` (a `time.time()`), the window starts then instead of `warmup`
seconds after this process started: several generator processes then measure the same window (the warm-up is from
their start to it; `warmup_seconds` in the result says how long it was).
"""

import asyncio
import json
import random
import sys
import time
from collections import Counter, defaultdict
from typing import Any

from bench.common import summary
from bench.http import Connection


async def client(config: dict[str, Any], start: float, stop: float, seed: int, out: dict[str, Any]) -> None:
    rng = random.Random(seed)
    kinds = config["requests"]
    weights = [k["weight"] for k in kinds]
    prepared = [[(v["method"], v["path"], v.get("body", "").encode()) for v in k["variants"]] for k in kinds]
    connection = Connection(config["host"], config["port"])
    try:
        while True:
            now = time.perf_counter()
            if now >= stop:
                return
            index = rng.choices(range(len(kinds)), weights)[0]
            method, path, body = rng.choice(prepared[index])
            sent = time.perf_counter()
            try:
                status, payload = await connection.request(method, path, body)
            except (OSError, asyncio.IncompleteReadError) as exc:
                status, payload = 599, str(exc).encode()
            done = time.perf_counter()
            if start <= done <= stop:
                name = kinds[index]["kind"]
                out["latency"][name].append(done - sent)
                out["status"][str(status)] += 1
                if status != 200 or b'"errors"' in payload:
                    out["failed"][name] += 1
                    if len(out["samples"]) < 5:
                        out["samples"].append(payload[:300].decode("utf-8", "replace"))
    finally:
        await connection.close()


async def run(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "latency": defaultdict(list),
        "status": Counter(),
        "failed": Counter(),
        "samples": [],
    }
    began = time.perf_counter()
    start = began + config["warmup"]
    if "start_at" in config:
        start = began + (config["start_at"] - time.time())
    stop = start + config["duration"]
    cpu_before = time.process_time()
    await asyncio.gather(*(client(config, start, stop, seed, out) for seed in range(config["concurrency"])))
    total = sum(len(v) for v in out["latency"].values())
    return {
        "requests": total,
        "rps": total / config["duration"],
        "status": dict(out["status"]),
        "failed": dict(out["failed"]),
        "failure_samples": out["samples"],
        "latency_ms": {k: summary(v) for k, v in out["latency"].items()},
        "all_latency_ms": summary([x for v in out["latency"].values() for x in v]) if total else {},
        "loadgen_cpu_seconds": time.process_time() - cpu_before,
        "wall_seconds": time.perf_counter() - began,
        "warmup_seconds": start - began,
    }


def main() -> None:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    result = asyncio.run(run(config))
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
