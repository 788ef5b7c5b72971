"""The small model server the process runtime starts for each route.

It answers `GET /health` and `POST /v1/predict` with its revision's image and number. Its revision's `env` can make
it misbehave, for demos and tests:

- `REPLICA_START_DELAY_SECONDS`: wait this long before listening (a slow start);
- `REPLICA_FAIL_TO_START=1`: exit at once with an error (a broken image);
- `REPLICA_UNHEALTHY_AFTER_SECONDS`: answer 503 on /health once this long has passed since start;
- `REPLICA_ERROR_PERCENT` (0–100): answer that share of POST requests with 500, spread evenly and
  deterministically over the requests this replica receives: the n-th fails when ⌊n·p/100⌋ > ⌊(n−1)·p/100⌋
  (at 20: the 5th, 10th, 15th, …), so any 100 requests in a row hold exactly p failures (p whole; a bad
  model for analysis to catch).
"""

import argparse
import math
import os
import socket
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
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
        if fails(posts, error_percent):
            return JSONResponse({"error": "the model failed (REPLICA_ERROR_PERCENT)", "revision": revision}, 500)
        return JSONResponse({"image": image, "revision": revision, "route": route_id, "prediction": len(body) % 2 == 0})

    routes = [Route("/v1/predict", predict, methods=["POST"]), Route(health_path, health)]
    if health_path != "/health":
        routes.append(Route("/health", health))
    return Starlette(routes=routes)


def error_percent_of(raw: str, route: str) -> float:
    try:
        percent = float(raw)
    except ValueError:
        percent = math.nan
    if not 0 <= percent <= 100:  # NaN included
        raise SystemExit(f"replica for route {route}: REPLICA_ERROR_PERCENT must be a number 0–100, got {raw!r}")
    return percent


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
    )
    sock = socket.socket(fileno=args.fd)  # already bound and listening: no port race with other replicas
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
