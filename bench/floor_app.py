"""The throughput floor: bare Starlette + asyncpg serving the bench's reads without GraphQL.

Run like the product's server (one uvicorn process, same log level): `python -m bench.floor_app --port P` with
DATABASE_URL set. Each endpoint is one SQL statement whose JSON PostgreSQL builds (see bench/floor_sql.py).
"""

import argparse
import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench import floor_sql


def create_app(url: str) -> Starlette:
    pool: asyncpg.Pool | None = None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal pool
        # The product's pool: at most 10 connections (store.database.open_database).
        pool = await asyncpg.create_pool(url, min_size=1, max_size=10)
        try:
            yield
        finally:
            await pool.close()

    async def answer(sql: str, *args: object) -> Response:
        assert pool is not None
        text = await pool.fetchval(sql, *args)
        return Response(b'{"data":' + text.encode() + b"}", media_type="application/json")

    def parse_uuid(value: str) -> uuid.UUID | None:
        try:
            return uuid.UUID(value)
        except ValueError:
            return None

    async def ready(request: Request) -> Response:
        assert pool is not None
        await pool.fetchval("SELECT 1")
        return Response(b'{"status":"ready"}', media_type="application/json")

    async def page(request: Request) -> Response:
        return await answer(floor_sql.PAGE, int(request.query_params.get("first", "100")), 0)

    async def deployments(request: Request) -> Response:
        first = int(request.query_params.get("first", "20"))
        return await answer(floor_sql.LIST, first, int(request.query_params.get("after", "0")))

    async def deployment(request: Request) -> Response:
        return await answer(floor_sql.ONE, parse_uuid(request.path_params["id"]))

    async def route(request: Request) -> Response:
        return await answer(floor_sql.ROUTE, parse_uuid(request.path_params["id"]))

    return Starlette(
        routes=[
            Route("/ready", ready),
            Route("/page", page),
            Route("/deployments", deployments),
            Route("/deployment/{id}", deployment),
            Route("/route/{id}", route),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(os.environ["DATABASE_URL"]), host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
