"""`make run`: Switchover on the embedded PostgreSQL, migrated and serving, with a first request to try."""

import sys

from switchover import cli
from switchover.settings import from_environment

EXAMPLE = """
Switchover is serving its GraphQL subgraph at http://127.0.0.1:8000/graphql (GraphiQL opens there in a browser).
Try, in another terminal:

  curl -s http://127.0.0.1:8000/graphql -H 'content-type: application/json' -d '{"query":
    "mutation { createDeployment(input: {projectId: \\"6f1c2a7e-0d4b-4f7e-9a51-3c0e8d2b9a10\\", name: \\"sentiment\\",
    replicas: 2, strategy: {type: BLUE_GREEN}}) { deployment { id name lifecycle } } }"}'

Stop with Ctrl-C.
"""


def main() -> int:
    settings = from_environment()
    if cli.cmd_migrate(settings, None) != 0:  # type: ignore[arg-type]
        return 1
    print(EXAMPLE, file=sys.stderr)
    return cli.main(["serve", "--host", "127.0.0.1", "--port", "8000"])


if __name__ == "__main__":
    sys.exit(main())
