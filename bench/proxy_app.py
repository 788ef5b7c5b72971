"""`switchover proxy` exactly as the CLI starts it (switchover/cli.py `cmd_proxy`), but with `count=False`: the
bench's control for what the per-request counting costs. `python -m bench.proxy_app --port PORT` (DATABASE_URL set).
"""

import functools
import sys

from switchover import cli, proxy

if __name__ == "__main__":
    # cmd_proxy imports create_proxy when it runs, so it takes this one.
    proxy.create_proxy = functools.partial(proxy.create_proxy, count=False)  # type: ignore[assignment]
    sys.exit(cli.main(["proxy", *sys.argv[1:]]))
