"""Debian packages the tests need (a browser, Prometheus, HAProxy), installed by the tests themselves when missing."""

import os
import subprocess
from pathlib import Path

import pytest


def ensure(packages: list[str], *, provides: list[Path], why: str, recommends: bool = False) -> None:
    """apt-get install `packages` unless every file of `provides` exists; skip the calling tests, saying why, only
    when installing is impossible here. `recommends`: also what they recommend (a browser's fonts)."""
    if all(path.exists() for path in provides):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Another installer (a parallel test setup) may hold dpkg's lock: wait for it rather than fail.
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    # Without recommends unless asked: Prometheus recommends a node exporter, a service the tests do not want.
    install = ["apt-get", *lock, "install", "-y", *([] if recommends else ["--no-install-recommends"]), *packages]
    for command in (["apt-get", *lock, "update"], install):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot install {' '.join(packages)} for {why}: {' '.join(command)} failed: {exc}")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            pytest.skip(
                f"cannot install {' '.join(packages)} for {why}: {' '.join(command)} exited "
                f"{done.returncode}: {' / '.join(tail)}"
            )
    missing = [str(path) for path in provides if not path.exists()]
    if missing:
        pytest.skip(f"apt-get installed {' '.join(packages)}, but {', '.join(missing)} is missing")
