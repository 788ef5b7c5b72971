"""Governance (SPEC §8): approvals bound to the revision and the rollout they approve, and freeze windows.

Promotions consult both (store/rollouts.py and the scheduler's await-promotion handler); deploys consult the
freeze. Every write is one transaction; an approval is also a history row of its deployment, and wakes the scheduler.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from databases import Database

from store import history, validation
from store.deployment_state import DEPLOYING, ROLLING_BACK, Projects, describe, lock_deployment, notify
from store.errors import Frozen, InvalidState, NotFound, does_not_exist
from store.models import Approval, Deployment, FreezeWindow, Governance
from store.queries import QUERIES

APPROVE = "approve"  # history phases
BREAK_GLASS = "break_glass"


def _approval(row: Any) -> Approval:
    return Approval(
        id=str(row["id"]),
        seq=row["seq"],
        deployment_id=str(row["deployment_id"]),
        revision_id=str(row["revision_id"]),
        approver=row["approver"],
        comment=row["comment"],
        created_at=row["created_at"],
    )


def _window(row: Any, prefix: str = "") -> FreezeWindow:
    return FreezeWindow(
        id=str(row[f"{prefix}id"]),
        seq=row[f"{prefix}seq"],
        project_id=str(row[f"{prefix}project_id"]),
        starts_at=row[f"{prefix}starts_at"],
        ends_at=row[f"{prefix}ends_at"],
        reason=row[f"{prefix}reason"],
        created_by=row[f"{prefix}created_by"],
        created_at=row[f"{prefix}created_at"],
    )


def _at(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


# --- reads (batched: each takes many ids and answers a dict, as the resolvers' loaders want) -----------------------


async def of_deployments(db: Database, ids: Sequence[str]) -> dict[str, Governance]:
    """What holds each deployment's promotion: approvals needed and given in the rollout in flight, the freeze window
    of its project in force now (database clock)."""
    ids = [i for i in (validation.canonical_id(i) for i in ids) if i is not None]
    rows = await db.fetch_all(QUERIES["governance_of_deployments"], {"ids": ids})
    return {
        str(row["id"]): Governance(
            required=row["required"],
            approvers=tuple(row["approvers"]),
            freeze=None if row["freeze_id"] is None else _window(row, "freeze_"),
        )
        for row in rows
    }


async def of_deployment(db: Database, deployment: Deployment) -> Governance:
    return (await of_deployments(db, [deployment.id]))[deployment.id]


async def approvals_of_deployments(db: Database, ids: Sequence[str]) -> dict[str, list[Approval]]:
    """The approvals of each deployment's rollout in flight, oldest first; none when nothing is being deployed."""
    ids = [i for i in (validation.canonical_id(i) for i in ids) if i is not None]
    found: dict[str, list[Approval]] = {i: [] for i in ids}
    for row in await db.fetch_all(QUERIES["approvals_of_rollouts"], {"ids": ids}):
        found[str(row["deployment_id"])].append(_approval(row))
    return found


async def freeze_windows_by_ids(db: Database, ids: Sequence[str]) -> dict[str, FreezeWindow]:
    ids = [i for i in (validation.canonical_id(i) for i in ids) if i is not None]
    return {str(row["id"]): _window(row) for row in await db.fetch_all(QUERIES["freeze_windows_by_ids"], {"ids": ids})}


async def freeze_windows_of_projects(db: Database, project_ids: Sequence[str]) -> dict[str, list[FreezeWindow]]:
    """Each project's windows that have not ended yet, soonest first (a project id that is no UUID has none)."""
    ids = [i for i in (validation.canonical_id(i) for i in project_ids) if i is not None]
    found: dict[str, list[FreezeWindow]] = {i: [] for i in ids}
    for row in await db.fetch_all(QUERIES["freeze_windows_of_projects"], {"project_ids": ids}):
        found[str(row["project_id"])].append(_window(row))
    return found


# --- checks made by promotions and deploys, inside their transaction -----------------------------------------------


def describe_approvals(governance: Governance) -> str:
    given = len(governance.approvers)
    who = f" ({', '.join(governance.approvers)})" if governance.approvers else ""
    return f"{given} of {governance.required} approvals{who}"


def check_approvals(deployment: Deployment, governance: Governance) -> None:
    """Refuse a promotion (INVALID_STATE) that lacks approvals, saying how many are missing."""
    missing = governance.missing_approvals
    if missing:
        raise InvalidState(
            f"deployment {deployment.name} needs {governance.required} approvals of the revision being deployed "
            f"before it is promoted and has {describe_approvals(governance)}: {missing} missing; "
            "operators of the project approve with approvePromotion"
        )


def describe_freeze(window: FreezeWindow) -> str:
    return f"freeze window {window.id} until {_at(window.ends_at)} ({window.reason})"


async def pass_freeze(
    db: Database,
    deployment: Deployment,
    governance: Governance,
    *,
    to: str,
    actor: str,
    break_glass: str | None,
    record: bool = True,
) -> None:
    """Refuse (FROZEN) what a freeze window in force forbids, unless `break_glass` (an admin's reason; the caller
    checked the role) lets this one operation through: then a history row names who and why (unless not `record`,
    a dry run)."""
    if break_glass is not None:
        validation.check_reason(break_glass, "breakGlass.reason")
    window = governance.freeze
    if window is None:
        return
    if break_glass is None:
        raise Frozen(
            f"project {deployment.project_id} is frozen: {describe_freeze(window)}; you cannot {to} deployment "
            f"{deployment.name} until it ends, unless an admin passes breakGlass: {{reason}}"
        )
    if record:
        await history.note(
            db,
            deployment,
            phase=BREAK_GLASS,
            message=f"{actor} broke the glass of {describe_freeze(window)} to {to}: {break_glass}",
            actor=actor,
        )


# --- operations -----------------------------------------------------------------------------------------------------


async def approve(
    db: Database,
    deployment_id: str,
    revision_id: str,
    *,
    actor: str,
    comment: str | None = None,
    projects: Projects = None,
) -> tuple[Deployment, Approval]:
    """`actor` approves the promotion of the revision being deployed, for this rollout only. Approving again counts
    once (the first approval stands, nothing is written). Wakes the scheduler: auto-promotion may be waiting."""
    deployment_id = validation.parse_id(deployment_id, "deploymentId")
    revision_id = validation.parse_id(revision_id, "revisionId")
    if comment is not None:
        validation.check_text(comment, "comment", 1000)
    async with db.transaction():
        deployment = await lock_deployment(db, deployment_id, projects=projects)
        revision = await db.fetch_one(
            QUERIES["revision_of_deployment"], {"id": revision_id, "deployment_id": deployment.id}
        )
        if revision is None:
            raise NotFound(f"deployment {deployment.name} has no revision {revision_id}")
        if deployment.lifecycle is not DEPLOYING or deployment.sub_step is ROLLING_BACK:
            raise InvalidState(f"{describe(deployment)}: only a rollout in flight can be approved")
        if revision_id != deployment.deploying_revision_id:
            raise InvalidState(
                f"revision {revision['number']} is not the one deployment {deployment.name} is deploying: an "
                "approval counts only for the revision being deployed, in this rollout"
            )
        values = {"deployment_id": deployment.id, "revision_id": revision_id, "approver": actor}
        row = await db.fetch_one(QUERIES["insert_approval"], {**values, "comment": comment})
        if row is None:  # this person approved this rollout already
            row = await db.fetch_one(QUERIES["approval_of_rollout"], {"deployment_id": deployment.id,
                                                                       "approver": actor})  # fmt: skip
            assert row is not None
            return deployment, _approval(row)
        governance = await of_deployment(db, deployment)
        said = f' ("{comment}")' if comment else ""
        await history.note(
            db,
            deployment,
            phase=APPROVE,
            message=f"{actor} approved revision {revision['number']}{said}; {describe_approvals(governance)}",
            actor=actor,
        )
        await db.execute(QUERIES["wake_deployment"], {"id": deployment.id})
        await notify(db, deployment.id)
    return deployment, _approval(row)


async def create_freeze_window(
    db: Database, *, project_id: str, starts_at: datetime, ends_at: datetime, reason: str, actor: str
) -> FreezeWindow:
    """A freeze window of the project, at most 30 days long and not already over (database clock)."""
    project_id = validation.parse_id(project_id, "projectId")
    validation.check_reason(reason, "reason")
    async with db.transaction():
        now = await db.fetch_val(QUERIES["database_now"])
        validation.check_freeze_window(starts_at, ends_at, now)
        row = await db.fetch_one(
            QUERIES["insert_freeze_window"],
            {"project_id": project_id, "starts_at": starts_at, "ends_at": ends_at, "reason": reason,
             "created_by": actor},
        )  # fmt: skip
        assert row is not None
    return _window(row)


async def delete_freeze_window(db: Database, window_id: str, *, actor: str, projects: Projects = None) -> FreezeWindow:
    """End a freeze window now (kept, marked deleted); the rollouts it held look again at once."""
    window_id = validation.parse_id(window_id, "id")
    async with db.transaction():
        values = {"id": window_id, "actor": actor, "projects": None if projects is None else list(projects)}
        row = await db.fetch_one(QUERIES["delete_freeze_window"], values)
        if row is None:
            raise does_not_exist("freeze window", window_id)
        await db.fetch_all(QUERIES["wake_rollouts_of_project"], {"project_id": row["project_id"]})
    return _window(row)
