"""Who is asking, and what they may do: `viewer` reads, `operator` changes deployments of its projects, `admin`
everything. Checked in root fields and in entity references alike; nested objects share their parent's project."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from graphql import GraphQLResolveInfo

from store.errors import Forbidden, Unauthenticated
from store.validation import canonical_id

ROLES = frozenset({"viewer", "operator", "admin"})
# Fields that need no token: composition tools send none.
PUBLIC_ROOT_FIELDS = frozenset({"_service", "__typename"})
READING_ROLES = frozenset({"viewer", "operator"})


@dataclass(frozen=True)
class Principal:
    sub: str
    roles: frozenset[str]
    projects: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def can_read(self, project_id: str) -> bool:
        readable = readable_projects(self)
        return readable is None or project_id in readable

    def can_change(self, project_id: str) -> bool:
        return self.is_admin or ("operator" in self.roles and project_id in self.projects)


# Without a JWT secret (started with --insecure) every caller is an administrator.
ANONYMOUS = Principal("anonymous", frozenset({"admin"}), frozenset())


def principal_from(authorization: str | None, secret: str) -> Principal:
    """The caller of an `Authorization: Bearer <HS256 JWT>` header; `exp`, `sub`, `roles` and `projects` required."""
    if not authorization:
        raise Unauthenticated("send an Authorization: Bearer <token> header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    try:
        claims: dict[str, Any] = jwt.decode(
            token.strip(), secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the token has expired; get a new one") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthenticated(f"the token has no {exc.claim!r} claim") from None
    except jwt.InvalidTokenError:
        raise Unauthenticated("the token is malformed or not signed with this server's secret") from None
    roles, projects = claims.get("roles", []), claims.get("projects", [])
    if not isinstance(claims["sub"], str) or not isinstance(roles, list) or not isinstance(projects, list):
        raise Unauthenticated("the token's sub must be a string and its roles and projects lists")
    unknown = {str(r) for r in roles} - ROLES
    if unknown:
        raise Unauthenticated(f"the token names unknown roles {sorted(unknown)}; use viewer, operator or admin")
    canonical = {canonical_id(p) if isinstance(p, str) else None for p in projects}
    return Principal(claims["sub"], frozenset(roles), frozenset(p for p in canonical if p is not None))


def readable_projects(principal: Principal) -> list[str] | None:
    """The one rule for reading, used by queries, the read planner, entity references and subscriptions: None (every
    project) for an admin; else the token's projects when it holds a role that reads; a token without one reads
    nothing, whatever projects it lists."""
    if principal.is_admin:
        return None
    if not principal.roles & READING_ROLES:
        return []
    return sorted(principal.projects)


def require_read(principal: Principal, project_id: str) -> None:
    """For a project the caller named itself (a filter), so naming it in the refusal tells nothing new. A record
    found by id is another matter: one the caller may not read answers as one that does not exist."""
    if not principal.can_read(project_id):
        raise Forbidden(f"{principal.sub} may not read project {project_id}")


def require_change(principal: Principal, project_id: str) -> None:
    if not principal.can_change(project_id):
        raise Forbidden(
            f"{principal.sub} may not change deployments of project {project_id}: "
            "that takes the operator role with this project in the token's projects, or admin"
        )


def require_authentication(resolver: Callable[..., Any], obj: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    """Every root field but `_service` needs a valid token (when a JWT secret is configured).

    A plain function, not a coroutine: it runs for every field, and an async middleware would turn every field,
    even a plain attribute, into a coroutine (measured: 4.7x slower on a page of 100 deployments).
    """
    error = getattr(info.context, "auth_error", None)
    if error is not None and info.parent_type in (info.schema.query_type, info.schema.mutation_type):
        if info.field_name not in PUBLIC_ROOT_FIELDS:
            raise error
    return resolver(obj, info, **args)
