#!/usr/bin/env bash
# The benchmark, in one command: bench/run.sh [--load-seconds 60] [--quick] [--only api,scheduler,reaction,load,shadow]
# Uses (or creates) the project's virtual environment, installs bench/requirements.txt into it, then runs every
# section against the PostgreSQL at 127.0.0.1:5432 (SWITCHOVER_BENCH_SERVER_URL to change) and writes
# bench/RESULTS.md, bench/results.json and bench/profiles/.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/switchover" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e '.[test]'
fi
"$VENV/bin/python" -m pip install --quiet -r bench/requirements.txt
if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" -m bench "$@"
