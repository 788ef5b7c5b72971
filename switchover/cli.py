"""The `switchover` command."""

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from typing import Any

from switchover import operate
from switchover import settings as settings_module
from switchover.settings import Settings


def exit_cleanly_on_sigterm(code: int | None = None) -> None:
    """Turn SIGTERM into a normal exit, so that `finally` blocks and atexit hooks (the embedded server's) run.

    uvicorn re-raises the signal it caught once it has shut down; this handler is what then runs.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum if code is None else code))


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    from switchover import embedded

    url = embedded.start(settings.data_dir)
    print(f"using the embedded PostgreSQL in {settings.data_dir / 'pgdata'}", file=sys.stderr)
    return url


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from store.database import migrate

    version = migrate(database_url(settings))
    print(f"database schema is at version {version}")
    return 0


def _check_schema_or_exit(url: str) -> None:
    from store.database import check_schema, open_database
    from store.errors import SchemaOutOfDate

    async def check() -> None:
        db = open_database(url, min_size=1, max_size=1)
        await db.connect()
        try:
            await check_schema(db)
        finally:
            await db.disconnect()

    try:
        asyncio.run(check())
    except SchemaOutOfDate as exc:
        raise SystemExit(f"switchover: {exc}") from None
    except OSError as exc:
        raise SystemExit(f"switchover: cannot reach the database: {exc}") from None


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from store.database import open_database
    from switchover.app import create_app

    exit_cleanly_on_sigterm()
    settings = dataclasses.replace(settings, insecure=args.insecure)
    if settings.jwt_secret is None and not settings.insecure:
        raise SystemExit(
            "switchover: SWITCHOVER_JWT_SECRET is not set. Set it to require signed tokens, or pass --insecure to "
            "let every caller act as admin (for a laptop, never for production)"
        )
    url = database_url(settings)
    _check_schema_or_exit(url)
    db = open_database(url, statement_timeout_ms=settings.statement_timeout_ms)
    uvicorn.run(create_app(settings, db), host=args.host, port=args.port, log_level="info")
    return 0


def cmd_scheduler(settings: Settings, args: argparse.Namespace) -> int:
    from scheduler.process import main
    from store.database import open_database

    exit_cleanly_on_sigterm(0)  # a SIGTERM before the scheduler loop runs: nothing started, a clean exit
    url = database_url(settings)
    _check_schema_or_exit(url)
    # A connection per worker of the lifecycle and the delivery loops, plus the runtime's and the health checker's.
    db = open_database(
        url, max_size=2 * settings.scheduler_workers + 3, statement_timeout_ms=settings.statement_timeout_ms
    )
    asyncio.run(main(db, url, settings))
    return 0


def cmd_proxy(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    exit_cleanly_on_sigterm()
    url = database_url(settings)
    _check_schema_or_exit(url)
    settings = dataclasses.replace(settings, database_url=url)
    # httptools and uvloop when installed (they are dependencies): measured fastest (bench/b_proxy_machinery.py).
    # The replica's own Date and Server headers pass through: uvicorn adds none of its own. Its proxy_headers would
    # replace the peer's address by the caller's X-Forwarded-For, which the proxy must append to, not trust.
    options: dict[str, Any] = dict(host=args.host, port=args.port, log_level="warning", http="auto", loop="auto",
                                   server_header=False, date_header=False, proxy_headers=False)  # fmt: skip
    if settings.proxy_workers == 1:
        uvicorn.run(proxy_app(settings), **options)
    else:  # each worker process builds its own proxy from the same environment
        os.environ["DATABASE_URL"] = url  # the embedded database this process started, if it was one
        uvicorn.run("switchover.cli:proxy_app", factory=True, workers=settings.proxy_workers, **options)
    return 0


def proxy_app(settings: Settings | None = None) -> Any:
    """The `switchover proxy` application for `settings` (the environment's when None: a worker process)."""
    from store.database import open_database
    from switchover import tracing
    from switchover.proxy import Timeouts, create_proxy

    settings = settings or settings_module.from_environment()
    url = database_url(settings)
    db = open_database(url, max_size=4, statement_timeout_ms=settings.statement_timeout_ms)
    proxy = create_proxy(
        db,
        url,
        flush_seconds=settings.proxy_flush_seconds,
        shadow_timeout=settings.shadow_timeout_seconds,
        shadow_max_body=settings.shadow_max_body_bytes,
        shadow_max_in_flight=settings.shadow_max_in_flight,
        refresh_seconds=settings.proxy_refresh_seconds,
        timeouts=Timeouts(
            connect=settings.proxy_connect_timeout,
            first_byte=settings.proxy_first_byte_timeout,
            idle=settings.proxy_idle_timeout,
            avoid=settings.proxy_avoid_seconds,
        ),
    )
    return tracing.traced(proxy, "switchover-proxy")  # a server span per request when OTEL_* is set; else the app


def cmd_haproxy(settings: Settings, args: argparse.Namespace) -> int:
    from switchover import haproxy

    if args.backend_prefix and not haproxy.IDENTIFIER.fullmatch(args.backend_prefix):
        print("switchover: --backend-prefix may hold only letters, digits, '-', '_', '.' and ':'", file=sys.stderr)
        return 2
    api = haproxy.RuntimeApi(args.socket)
    # Checked before the database: a wrong socket is the likeliest mistake, and says so at once.
    problem = asyncio.run(haproxy.check_runtime_api(api))
    if problem is not None:
        print(f"switchover: {problem}", file=sys.stderr)
        return 2
    exit_cleanly_on_sigterm(0)
    url = database_url(settings)
    _check_schema_or_exit(url)
    asyncio.run(haproxy.main(url, api, prefix=args.backend_prefix, resync_seconds=args.resync_seconds))
    return 0


def cmd_schema_print(settings: Settings, args: argparse.Namespace) -> int:
    from switchover.sdl import subgraph_sdl

    print(subgraph_sdl())
    return 0


def cmd_schema_check(settings: Settings, args: argparse.Namespace) -> int:
    from switchover.schema_tools import check

    return check(args.against)


def cmd_schema_compose(settings: Settings, args: argparse.Namespace) -> int:
    from switchover.schema_tools import ROOT, compose

    composed = compose()
    target = ROOT / "supergraph.graphql"
    if args.check:
        if not target.exists() or target.read_text() != composed:
            print("supergraph.graphql is stale: run `switchover schema compose` and commit it", file=sys.stderr)
            return 1
        print("supergraph.graphql is up to date")
        return 0
    target.write_text(composed)
    print(f"wrote {target}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="switchover", description="Blue-green and rolling deployments control plane.")
    commands = top.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the GraphQL subgraph over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--insecure", action="store_true", help="without SWITCHOVER_JWT_SECRET: accept every caller as admin"
    )
    serve.set_defaults(run=cmd_serve)

    scheduler = commands.add_parser("scheduler", help="run the lifecycle scheduler (any number may run at once)")
    scheduler.set_defaults(run=cmd_scheduler)

    proxy = commands.add_parser("proxy", help="forward /{deployment}/... to the routes that take its traffic")
    proxy.add_argument("--host", default="127.0.0.1")
    proxy.add_argument("--port", type=int, default=8080)
    proxy.set_defaults(run=cmd_proxy)

    haproxy = commands.add_parser("haproxy", help="keep a running HAProxy's servers in step with the routes")
    haproxy.add_argument("--socket", required=True, help="HAProxy's stats socket (level admin): PATH or ipv4@HOST:PORT")
    haproxy.add_argument("--backend-prefix", default="", help="backends are named this + the deployment's name")
    haproxy.add_argument("--resync-seconds", type=float, default=1.0, help="full re-sync period (NOTIFY aside)")
    haproxy.set_defaults(run=cmd_haproxy)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.set_defaults(run=cmd_migrate)

    schema = commands.add_parser("schema", help="the subgraph SDL")
    schema_commands = schema.add_subparsers(dest="schema_command", required=True)
    schema_print = schema_commands.add_parser("print", help="print the SDL as served by `_service { sdl }`")
    schema_print.set_defaults(run=cmd_schema_print)
    schema_check = schema_commands.add_parser("check", help="breaking and dangerous changes against a git ref or file")
    schema_check.add_argument("--against", required=True, help="a git ref (e.g. origin/main, HEAD~1) or an SDL file")
    schema_check.set_defaults(run=cmd_schema_check)
    schema_compose = schema_commands.add_parser("compose", help="compose supergraph.yaml into supergraph.graphql")
    schema_compose.add_argument("--check", action="store_true", help="fail if the committed file is stale")
    schema_compose.set_defaults(run=cmd_schema_compose)
    operate.add_parsers(
        commands,
        {
            "url": os.environ.get("SWITCHOVER_URL", "http://127.0.0.1:8000/graphql"),
            "token": os.environ.get("SWITCHOVER_TOKEN"),
        },
    )
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request drowns the rest
    return args.run(settings_module.from_environment(), args)


if __name__ == "__main__":
    sys.exit(main())
