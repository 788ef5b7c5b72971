-- Metric analysis (SPEC §6): the specs a blue-green deployment runs before and after promotion, the runs with their
-- measurements, and the per-interval traffic figures every `switchover proxy` writes for the BUILTIN provider.

ALTER TABLE deployments
    ADD COLUMN pre_promotion_analysis  jsonb CHECK (jsonb_typeof(pre_promotion_analysis) = 'object'),
    ADD COLUMN post_promotion_analysis jsonb CHECK (jsonb_typeof(post_promotion_analysis) = 'object');

CREATE TABLE analysis_runs (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    deployment_id   uuid NOT NULL REFERENCES deployments (id),
    revision_id     uuid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('PRE_PROMOTION', 'POST_PROMOTION', 'CANARY_STEP', 'BACKGROUND')),
    phase           text NOT NULL DEFAULT 'RUNNING' CHECK (phase IN ('RUNNING', 'SUCCESSFUL', 'FAILED', 'ERROR')),
    -- The AnalysisSpecInput it runs, as validated: metrics, intervalSeconds, count, failureLimit.
    spec            jsonb NOT NULL CHECK (jsonb_typeof(spec) = 'object'),
    passed          integer NOT NULL DEFAULT 0 CHECK (passed >= 0),    -- checks every metric passed
    failed          integer NOT NULL DEFAULT 0 CHECK (failed >= 0),    -- checks a metric failed
    errors          integer NOT NULL DEFAULT 0 CHECK (errors >= 0),    -- checks in a row with no answer
    -- When the next check is due (a scheduler step claims it); NULL once the run has ended.
    next_check_at   timestamptz,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (deployment_id, revision_id) REFERENCES revisions (deployment_id, id),
    CONSTRAINT ended_runs_have_an_end CHECK ((phase = 'RUNNING') = (finished_at IS NULL)),
    CONSTRAINT ended_runs_are_never_due CHECK (phase = 'RUNNING' OR next_check_at IS NULL)
);

-- At most one run of a kind in progress per deployment.
CREATE UNIQUE INDEX analysis_runs_one_running ON analysis_runs (deployment_id, kind) WHERE phase = 'RUNNING';
CREATE INDEX analysis_runs_deployment ON analysis_runs (deployment_id, seq);
CREATE INDEX analysis_runs_due ON analysis_runs (next_check_at) WHERE next_check_at IS NOT NULL;

CREATE TABLE analysis_measurements (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    run_id      uuid NOT NULL REFERENCES analysis_runs (id),
    metric      text NOT NULL,
    value       double precision,
    -- NULL: the provider gave no number (unreachable, timed out, nonsense): never a pass.
    passed      boolean,
    message     text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT a_verdict_needs_a_value CHECK (passed IS NULL OR value IS NOT NULL)
);

CREATE INDEX analysis_measurements_run ON analysis_measurements (run_id, seq);

-- What one proxy saw of one revision during one interval: requests, 5xx answers, and request durations counted
-- into fixed buckets. The BUILTIN provider sums them over proxies.
CREATE TABLE proxy_traffic (
    deployment_id       uuid NOT NULL REFERENCES deployments (id),
    revision_id         uuid NOT NULL,
    interval_start      timestamptz NOT NULL,
    proxy_id            text NOT NULL,
    requests            bigint NOT NULL CHECK (requests >= 0),
    errors              bigint NOT NULL CHECK (errors BETWEEN 0 AND requests),
    duration_buckets    bigint[] NOT NULL,
    PRIMARY KEY (deployment_id, revision_id, interval_start, proxy_id),
    FOREIGN KEY (deployment_id, revision_id) REFERENCES revisions (deployment_id, id)
);
