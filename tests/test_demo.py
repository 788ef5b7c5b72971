"""`make run`'s demo runs end to end: a real blue-green rollout with zero failed requests, then cleans up."""

import os
import subprocess
import sys
from pathlib import Path

import psutil


def test_the_demo_rolls_out_two_revisions_with_no_failed_request(database_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "SWITCHOVER_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "switchover.demo", "--exit", "--api-port", "0", "--proxy-port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "requests answered by revision 1" in result.stdout
    assert "requests answered by revision 2" in result.stdout
    assert " 0 failed during the promotion" in result.stdout
    assert "PROMOTED revision 2" in result.stdout
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if "scheduler.replica" in (p.info["cmdline"] or [])]
    assert leftovers == []
