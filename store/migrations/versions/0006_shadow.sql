-- Shadow traffic (SPEC §6): the ShadowSpecInput of a blue-green deployment, the per-interval agreement counts every
-- `switchover proxy` writes for the revision it mirrors to, and a few disagreeing samples per revision.

ALTER TABLE deployments
    -- The ShadowSpecInput as validated: percent, compare, tolerance, ignore_fields.
    ADD COLUMN shadow jsonb CHECK (jsonb_typeof(shadow) = 'object');

-- What one proxy mirrored to one revision during one interval: each mirrored request is exactly one of agreed,
-- disagreed, green_errors.
CREATE TABLE shadow_traffic (
    deployment_id   uuid NOT NULL REFERENCES deployments (id),
    revision_id     uuid NOT NULL,
    interval_start  timestamptz NOT NULL,
    proxy_id        text NOT NULL,
    agreed          bigint NOT NULL CHECK (agreed >= 0),
    disagreed       bigint NOT NULL CHECK (disagreed >= 0),
    green_errors    bigint NOT NULL CHECK (green_errors >= 0),
    PRIMARY KEY (deployment_id, revision_id, interval_start, proxy_id),
    FOREIGN KEY (deployment_id, revision_id) REFERENCES revisions (deployment_id, id)
);

-- Disagreements kept as examples (the newest few per revision): request without headers, both answers, truncated.
CREATE TABLE shadow_samples (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deployment_id   uuid NOT NULL REFERENCES deployments (id),
    revision_id     uuid NOT NULL,
    request         text NOT NULL CHECK (octet_length(request) <= 4096),
    blue_answer     text NOT NULL CHECK (octet_length(blue_answer) <= 4096),
    green_answer    text NOT NULL CHECK (octet_length(green_answer) <= 4096),
    at              timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (deployment_id, revision_id) REFERENCES revisions (deployment_id, id)
);

CREATE INDEX shadow_samples_revision ON shadow_samples (deployment_id, revision_id, seq);
