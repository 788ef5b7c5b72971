-- Webhooks (SPEC §8). A webhook subscribes a project's deployments' history to an http(s) URL; every history row
-- a webhook matches becomes one delivery row, written by a trigger in the transaction that wrote the history row
-- (an outbox: whichever process writes history, and whenever any process dies, no row is lost). The scheduler
-- leases deliveries, posts them, and records each attempt.

CREATE TABLE webhooks (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    project_id  uuid NOT NULL,
    url         text NOT NULL CHECK (url ~* '^https?://' AND length(url) <= 2048),
    -- History phases delivered; empty: all of them.
    events      text[] NOT NULL DEFAULT '{}' CHECK (cardinality(events) <= 64),
    -- Kept in clear: it signs every body (HMAC), so it must be read back; the API never returns it.
    secret      text NOT NULL CHECK (octet_length(secret) BETWEEN 16 AND 1024),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Deleted webhooks are kept (their deliveries refer to them) but match and send nothing more.
    deleted_at  timestamptz
);

CREATE INDEX webhooks_live_of_project ON webhooks (project_id) WHERE deleted_at IS NULL;

CREATE TABLE webhook_deliveries (
    -- Also the `x-switchover-delivery` header: one per webhook and history row, the same on every retry.
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    webhook_id        uuid NOT NULL REFERENCES webhooks (id),
    deployment_id     uuid NOT NULL REFERENCES deployments (id),
    history_id        uuid NOT NULL REFERENCES deployment_history (id),
    -- The order deliveries of one deployment go out in (history is written under the deployment's lock).
    history_seq       bigint NOT NULL,
    phase             text NOT NULL,
    -- What is sent, fixed when the history row was written (a later merge of retries does not change it).
    payload           jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    status            text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DELIVERED', 'DEAD')),
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Due time of the next attempt, or the end of the lease of the attempt in flight; only while PENDING.
    next_attempt_at   timestamptz,
    last_error        text CHECK (length(last_error) <= 1000),
    last_status_code  integer CHECK (last_status_code BETWEEN 100 AND 599),
    delivered_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (webhook_id, history_id),
    CONSTRAINT pending_deliveries_are_scheduled CHECK ((status = 'PENDING') = (next_attempt_at IS NOT NULL)),
    CONSTRAINT delivered_deliveries_say_when CHECK ((status = 'DELIVERED') = (delivered_at IS NOT NULL))
);

-- The claim: due rows, and the older pending rows of the same webhook and deployment that hold them back.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (webhook_id, deployment_id, history_seq)
    WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_of_webhook ON webhook_deliveries (webhook_id, seq);

-- One delivery per live webhook of the deployment's project that wants this phase, in the history row's
-- transaction; schedulers are woken at commit (store.notifications.WEBHOOK_CHANNEL, which data planes do not
-- listen to) so that delivery starts at once.
CREATE FUNCTION enqueue_webhook_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queued integer;
BEGIN
    INSERT INTO webhook_deliveries (webhook_id, deployment_id, history_id, history_seq, phase, payload,
                                    next_attempt_at)
    SELECT w.id, NEW.deployment_id, NEW.id, NEW.seq, NEW.phase,
           jsonb_build_object(
               'webhookId', w.id,
               'projectId', d.project_id,
               'deployment', jsonb_build_object('id', d.id, 'name', d.name),
               'history', jsonb_build_object(
                   'id', NEW.id, 'phase', NEW.phase,
                   'fromLifecycle', NEW.from_lifecycle, 'toLifecycle', NEW.to_lifecycle,
                   'fromSubStep', NEW.from_sub_step, 'toSubStep', NEW.to_sub_step,
                   'result', NEW.result, 'message', NEW.message, 'errorCode', NEW.error_code,
                   'attempts', NEW.attempts, 'actor', NEW.actor,
                   'createdAt', NEW.created_at, 'updatedAt', NEW.updated_at)),
           now()
    FROM deployments d JOIN webhooks w ON w.project_id = d.project_id AND w.deleted_at IS NULL
    WHERE d.id = NEW.deployment_id AND (cardinality(w.events) = 0 OR NEW.phase = ANY (w.events));
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM pg_notify('switchover_webhooks', NEW.deployment_id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER deployment_history_delivered
    AFTER INSERT ON deployment_history
    FOR EACH ROW EXECUTE FUNCTION enqueue_webhook_deliveries();
