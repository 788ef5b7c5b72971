"""Signed tokens for tests."""

import time
from typing import Any

import jwt

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def token(sub: str = "alice", roles: list[str] | None = None, projects: list[str] | None = None, **claims: Any) -> str:
    """A token holding exactly the roles given: none when none are given (never a silent admin)."""
    payload = {"sub": sub, "roles": roles or [], "projects": projects or [], "exp": int(time.time()) + 3600}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, SECRET, algorithm="HS256")


def bearer(*args: Any, **kwargs: Any) -> dict[str, str]:
    return {"authorization": f"Bearer {token(*args, **kwargs)}"}
