-- Governance (SPEC §8): approvals bound to the revision and the rollout they approve, and freeze windows.

-- How many distinct people must approve a blue-green promotion (a canary keeps its own count in its `canary` jsonb).
-- Bounded: a policy nobody can satisfy is a mistake, not a safeguard.
ALTER TABLE deployments
    ADD COLUMN required_approvals integer NOT NULL DEFAULT 0 CHECK (required_approvals BETWEEN 0 AND 10);

-- One approval of one revision in one rollout (the deployment's rollout_epoch when it was given, 0005): a later
-- deploy of any revision, the same one included, starts a new epoch, so the approvals of earlier attempts never
-- count again. One approval per person and rollout: approving twice counts once.
CREATE TABLE approvals (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    deployment_id   uuid NOT NULL REFERENCES deployments (id),
    revision_id     uuid NOT NULL,
    rollout_epoch   bigint NOT NULL,
    approver        text NOT NULL CHECK (length(approver) BETWEEN 1 AND 1000),
    comment         text CHECK (length(comment) <= 1000),
    created_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (deployment_id, revision_id) REFERENCES revisions (deployment_id, id),
    CONSTRAINT one_approval_per_person_and_rollout UNIQUE (deployment_id, rollout_epoch, revision_id, approver)
);

-- A project's freeze window: while it is in force (database clock), deploys and promotions are refused and
-- auto-promotion waits, unless an admin breaks the glass. Deleting one keeps it, marked, for the record.
CREATE TABLE freeze_windows (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    project_id      uuid NOT NULL,
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    reason          text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    deleted_by      text,
    deleted_at      timestamptz,
    CONSTRAINT ends_after_it_starts CHECK (ends_at > starts_at),
    CONSTRAINT at_most_30_days CHECK (ends_at - starts_at <= interval '30 days'),
    CONSTRAINT deleted_with_who CHECK ((deleted_at IS NULL) = (deleted_by IS NULL))
);

CREATE INDEX freeze_windows_in_force ON freeze_windows (project_id, ends_at) WHERE deleted_at IS NULL;
