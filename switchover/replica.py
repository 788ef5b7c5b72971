"""The small model server the process runtime starts for each route.

It answers `GET /health` and `POST /v1/predict` with its revision's image and number. Its revision's `env` can make
it misbehave, for demos and tests:

- `REPLICA_START_DELAY_SECONDS`: wait this long before listening (a slow start);
- `REPLICA_FAIL_TO_START=1`: exit at once with an error (a broken image);
- `REPLICA_UNHEALTHY_AFTER_SECONDS`: answer 503 on /health once this long has passed since start;
- `REPLICA_ERROR_PERCENT` (0–100): answer that share of POST requests with 500, spread evenly and
  deterministically over the requests this replica receives: the n-th fails when ⌊n·p/100⌋ > ⌊(n−1)·p/100⌋
  (at 20: the 5th, 10th, 15th, …), so any 100 requests in a row hold exactly p failures (p whole; a bad
  model for analysis to catch);
- `REPLICA_DRIFT_PERCENT` (0–100): answer that share of POST requests (spread the same way) with the opposite
  `prediction` (a model that drifts on some inputs, for shadow traffic to catch);
- `REPLICA_SCORE_OFFSET`: add this to every `score` (a model whose numbers differ a little);
- `REPLICA_ANSWER_DELAY_SECONDS`: wait this long before answering a POST (a slow model, or one that never answers).

A POST's answer holds its `prediction` and `score` (both functions of the body), and `"shadow": true` when the
request came with `x-switchover-shadow: 1` (a mirrored copy).

`GET /v1/stream?events=N&interval=S` answers server-sent events, one every S seconds (a model streaming its tokens),
and `GET /v1/bytes?size=N` N bytes in 64 KiB chunks (a large answer): data planes are tested and measured with them.
"""

import argparse
import asyncio
import json
import math
import os
import socket
import time
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def fails(n: int, error_percent: float) -> bool:
    """Whether the n-th POST (from 1) answers 500: exactly ⌊n·p/100⌋ of the first n do."""
    return math.floor(n * error_percent / 100) > math.floor((n - 1) * error_percent / 100)


def create_app(
    *,
    image: str,
    revision: int,
    route_id: str,
    health_path: str,
    unhealthy_after: float | None,
    error_percent: float = 0,
    drift_percent: float = 0,
    score_offset: float = 0,
    answer_delay: float = 0,
) -> Starlette:
    started = time.monotonic()
    posts = 0

    async def health(request: Request) -> Response:
        if unhealthy_after is not None and time.monotonic() - started >= unhealthy_after:
            return JSONResponse({"status": "unhealthy"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def predict(request: Request) -> Response:
        nonlocal posts
        body = await request.body()
        posts += 1
        n = posts
        if answer_delay:
            await asyncio.sleep(answer_delay)
        if fails(n, error_percent):
            return JSONResponse({"error": "the model failed (REPLICA_ERROR_PERCENT)", "revision": revision}, 500)
        prediction = (len(body) % 2 == 0) != fails(n, drift_percent)
        answer = {"image": image, "revision": revision, "route": route_id, "prediction": prediction,
                  "score": len(body) / 10 + score_offset}  # fmt: skip
        if request.headers.get("x-switchover-shadow") == "1":
            answer["shadow"] = True
        return JSONResponse(answer)

    async def stream(request: Request) -> Response:
        events = min(int(request.query_params.get("events", "5")), 10_000)
        interval = float(request.query_params.get("interval", "0.5"))

        async def tokens() -> AsyncIterator[bytes]:
            for n in range(events):
                if n:
                    await asyncio.sleep(interval)
                yield f"id: {n}\ndata: {json.dumps({'n': n, 'revision': revision, 'sent': time.time()})}\n\n".encode()

        return StreamingResponse(tokens(), media_type="text/event-stream")

    async def sized(request: Request) -> Response:
        size = int(request.query_params.get("size", "0"))
        chunk = b"x" * 65536

        async def pieces() -> AsyncIterator[bytes]:
            left = size
            while left > 0:
                yield chunk[: min(left, len(chunk))]
                left -= len(chunk)

        return StreamingResponse(pieces(), media_type="application/octet-stream", headers={"content-length": str(size)})

    routes = [
        Route("/v1/predict", predict, methods=["POST"]),
        Route("/v1/stream", stream),
        Route("/v1/bytes", sized),
        Route(health_path, health),
    ]
    if health_path != "/health":
        routes.append(Route("/health", health))
    return Starlette(routes=routes)


def error_percent_of(raw: str, route: str, variable: str = "REPLICA_ERROR_PERCENT") -> float:
    try:
        percent = float(raw)
    except ValueError:
        percent = math.nan
    if not 0 <= percent <= 100:  # NaN included
        raise SystemExit(f"replica for route {route}: {variable} must be a number 0–100, got {raw!r}")
    return percent


def number_of(raw: str, route: str, variable: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise SystemExit(f"replica for route {route}: {variable} must be a number, got {raw!r}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description="Switchover's local model replica")
    parser.add_argument("--fd", type=int, required=True, help="listening socket inherited from the runtime")
    parser.add_argument("--route", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--revision", type=int, required=True)
    parser.add_argument("--health-path", default="/health")
    args = parser.parse_args()

    if os.environ.get("REPLICA_FAIL_TO_START") == "1":
        raise SystemExit(f"replica for route {args.route}: told to fail to start")
    time.sleep(float(os.environ.get("REPLICA_START_DELAY_SECONDS", "0")))
    unhealthy_after = os.environ.get("REPLICA_UNHEALTHY_AFTER_SECONDS")
    error_percent = error_percent_of(os.environ.get("REPLICA_ERROR_PERCENT") or "0", args.route)
    app = create_app(
        image=args.image,
        revision=args.revision,
        route_id=args.route,
        health_path=args.health_path,
        unhealthy_after=float(unhealthy_after) if unhealthy_after else None,
        error_percent=error_percent,
        drift_percent=error_percent_of(os.environ.get("REPLICA_DRIFT_PERCENT") or "0", args.route,
                                       "REPLICA_DRIFT_PERCENT"),
        score_offset=number_of(os.environ.get("REPLICA_SCORE_OFFSET") or "0", args.route, "REPLICA_SCORE_OFFSET"),
        answer_delay=max(0.0, number_of(os.environ.get("REPLICA_ANSWER_DELAY_SECONDS") or "0", args.route,
                                        "REPLICA_ANSWER_DELAY_SECONDS")),
    )  # fmt: skip
    sock = socket.socket(fileno=args.fd)  # already bound and listening: no port race with other replicas
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
