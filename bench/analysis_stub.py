"""The WEB provider's counterpart for the bench, in a process of its own: `python -m bench.analysis_stub PORT`.

`GET /value?v=0&delay_ms=100` answers `{"value": 0}` after 100 ms.
"""

import asyncio
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def value(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("delay_ms", "0")) / 1000)
    return JSONResponse({"value": float(request.query_params.get("v", "1"))})


async def ready(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


if __name__ == "__main__":
    app = Starlette(routes=[Route("/value", value), Route("/ready", ready)])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
