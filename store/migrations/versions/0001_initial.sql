-- Deployments, revisions, routes and their history. Invariants the database can hold are held here.

CREATE TABLE deployments (
    id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq                         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    project_id                  uuid NOT NULL,
    name                        text NOT NULL
        CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    replicas                    integer NOT NULL CHECK (replicas BETWEEN 1 AND 1000),
    lifecycle                   text NOT NULL DEFAULT 'PENDING'
        CHECK (lifecycle IN ('PENDING', 'READY', 'DEPLOYING', 'DESTROYING', 'DESTROYED')),
    sub_step                    text
        CHECK (sub_step IN ('DEPLOYING_PROVISIONING', 'DEPLOYING_AWAITING_PROMOTION', 'DEPLOYING_ROLLING_BACK')),
    strategy_type               text NOT NULL CHECK (strategy_type IN ('ROLLING', 'BLUE_GREEN')),
    auto_promote                boolean NOT NULL DEFAULT false,
    promote_delay_seconds       integer NOT NULL DEFAULT 0 CHECK (promote_delay_seconds >= 0),
    promotion_timeout_seconds   integer CHECK (promotion_timeout_seconds > 0),
    scale_down_delay_seconds    integer NOT NULL DEFAULT 30 CHECK (scale_down_delay_seconds >= 0),
    max_surge_count             integer CHECK (max_surge_count >= 0),
    max_surge_percent           double precision CHECK (max_surge_percent BETWEEN 0 AND 1),
    max_unavailable_count       integer CHECK (max_unavailable_count >= 0),
    max_unavailable_percent     double precision CHECK (max_unavailable_percent BETWEEN 0 AND 1),
    provisioning_timeout_seconds integer NOT NULL DEFAULT 600 CHECK (provisioning_timeout_seconds > 0),
    max_retries                 integer NOT NULL DEFAULT 5 CHECK (max_retries >= 0),
    current_revision_id         uuid,
    deploying_revision_id       uuid,
    last_revision_number        integer NOT NULL DEFAULT 0,
    attempts                    integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    phase_started_at            timestamptz NOT NULL DEFAULT now(),
    -- When the scheduler should look at this deployment next; NULL while it waits only for a user.
    next_check_at               timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sub_step_only_while_deploying CHECK ((lifecycle = 'DEPLOYING') = (sub_step IS NOT NULL)),
    CONSTRAINT deploying_revision_only_while_deploying
        CHECK ((lifecycle = 'DEPLOYING') = (deploying_revision_id IS NOT NULL)),
    CONSTRAINT ready_has_current_revision CHECK (lifecycle <> 'READY' OR current_revision_id IS NOT NULL),
    CONSTRAINT pending_has_no_current_revision CHECK (lifecycle <> 'PENDING' OR current_revision_id IS NULL),
    CONSTRAINT one_max_surge CHECK (num_nonnulls(max_surge_count, max_surge_percent) = 1),
    CONSTRAINT one_max_unavailable CHECK (num_nonnulls(max_unavailable_count, max_unavailable_percent) = 1)
);

-- One live deployment of a name per project; a DESTROYED one frees its name.
CREATE UNIQUE INDEX deployments_live_name ON deployments (project_id, name) WHERE lifecycle <> 'DESTROYED';
CREATE INDEX deployments_project ON deployments (project_id, seq);
-- The scheduler only looks at deployments with work to do.
CREATE INDEX deployments_due ON deployments (next_check_at) WHERE next_check_at IS NOT NULL;

CREATE TABLE revisions (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    deployment_id       uuid NOT NULL REFERENCES deployments (id),
    number              integer NOT NULL CHECK (number >= 1),
    image               text NOT NULL CHECK (length(image) BETWEEN 1 AND 512),
    env                 jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(env) = 'object'),
    health_check_path   text NOT NULL DEFAULT '/health' CHECK (health_check_path LIKE '/%'),
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (deployment_id, number),
    -- Target of the composite foreign keys below: a deployment only points at its own revisions.
    UNIQUE (deployment_id, id)
);

ALTER TABLE deployments
    ADD CONSTRAINT current_revision_of_this_deployment
        FOREIGN KEY (id, current_revision_id) REFERENCES revisions (deployment_id, id),
    ADD CONSTRAINT deploying_revision_of_this_deployment
        FOREIGN KEY (id, deploying_revision_id) REFERENCES revisions (deployment_id, id);

CREATE TABLE routes (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq                 bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    deployment_id       uuid NOT NULL REFERENCES deployments (id),
    revision_id         uuid NOT NULL,
    status              text NOT NULL DEFAULT 'PROVISIONING'
        CHECK (status IN ('PROVISIONING', 'HEALTHY', 'UNHEALTHY', 'DEGRADED', 'TERMINATING', 'TERMINATED',
                          'FAILED_TO_START')),
    traffic_status      text NOT NULL DEFAULT 'INACTIVE' CHECK (traffic_status IN ('ACTIVE', 'INACTIVE')),
    traffic_ratio       double precision NOT NULL DEFAULT 0 CHECK (traffic_ratio BETWEEN 0 AND 1),
    endpoint_url        text,
    -- Which local process runs this route (process runtime): opaque to everything but the runtime.
    runtime_ref         text,
    -- Set on blue routes at promotion: when they stop being kept warm for an instant revert.
    terminate_after     timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (deployment_id, revision_id) REFERENCES revisions (deployment_id, id),
    CONSTRAINT inactive_routes_take_no_traffic CHECK (traffic_status = 'ACTIVE' OR traffic_ratio = 0),
    CONSTRAINT stopped_routes_take_no_traffic
        CHECK (traffic_status = 'INACTIVE' OR status NOT IN ('TERMINATING', 'TERMINATED', 'FAILED_TO_START'))
);

CREATE INDEX routes_deployment ON routes (deployment_id, seq);
CREATE INDEX routes_live ON routes (deployment_id) WHERE status NOT IN ('TERMINATED', 'FAILED_TO_START');

CREATE TABLE deployment_history (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    deployment_id   uuid NOT NULL REFERENCES deployments (id),
    phase           text NOT NULL,
    from_lifecycle  text,
    to_lifecycle    text,
    from_sub_step   text,
    to_sub_step     text,
    result          text NOT NULL CHECK (result IN ('SUCCESS', 'NEED_RETRY', 'EXPIRED', 'GIVE_UP', 'SKIPPED')),
    message         text NOT NULL,
    error_code      text,
    attempts        integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    actor           text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX deployment_history_deployment ON deployment_history (deployment_id, seq);
