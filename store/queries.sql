-- Named queries of the store. Parameters are `:name`; use CAST(... AS type), never `::type`, on a parameter.

-- name: create_deployment
INSERT INTO deployments (
    project_id, name, replicas, strategy_type, auto_promote, promote_delay_seconds, promotion_timeout_seconds,
    scale_down_delay_seconds, max_surge_count, max_surge_percent, max_unavailable_count, max_unavailable_percent,
    provisioning_timeout_seconds, max_retries, pre_promotion_analysis, post_promotion_analysis, shadow,
    required_approvals
) VALUES (
    :project_id, :name, :replicas, :strategy_type, :auto_promote, :promote_delay_seconds, :promotion_timeout_seconds,
    :scale_down_delay_seconds, :max_surge_count, :max_surge_percent, :max_unavailable_count, :max_unavailable_percent,
    :provisioning_timeout_seconds, :max_retries, :pre_promotion_analysis, :post_promotion_analysis, :shadow,
    :required_approvals
)
RETURNING *

-- name: lock_deployment
-- With :projects, a deployment of another project is not found: one the caller may not read answers as a missing one.
SELECT * FROM deployments
WHERE id = :id AND (CAST(:projects AS uuid[]) IS NULL OR project_id = ANY(CAST(:projects AS uuid[])))
FOR UPDATE

-- name: take_revision_number
UPDATE deployments
SET last_revision_number = last_revision_number + 1
WHERE id = :id
RETURNING last_revision_number

-- name: insert_revision
INSERT INTO revisions (deployment_id, number, image, env, health_check_path)
VALUES (:deployment_id, :number, :image, :env, :health_check_path)
RETURNING *

-- name: record_history
INSERT INTO deployment_history (
    deployment_id, phase, from_lifecycle, to_lifecycle, from_sub_step, to_sub_step, result, message, error_code,
    actor, attempts
) VALUES (
    :deployment_id, :phase, :from_lifecycle, :to_lifecycle, :from_sub_step, :to_sub_step, :result, :message,
    :error_code, :actor, :attempts
)

-- name: deployments_by_ids
SELECT * FROM deployments WHERE id = ANY(CAST(:ids AS uuid[]))

-- name: list_deployments
SELECT * FROM deployments
WHERE (CAST(:project_ids AS uuid[]) IS NULL OR project_id = ANY(CAST(:project_ids AS uuid[])))
  AND (CAST(:name AS text) IS NULL OR name = CAST(:name AS text))
  AND (CAST(:lifecycles AS text[]) IS NULL OR lifecycle = ANY(CAST(:lifecycles AS text[])))
  AND seq > :after_seq
ORDER BY seq
LIMIT :limit

-- name: list_deployments_of_projects
-- One page of deployments for each of several projects (federated `Project.deployments`).
SELECT * FROM (
    SELECT d.*, row_number() OVER (PARTITION BY project_id ORDER BY seq) AS rank
    FROM deployments d
    WHERE project_id = ANY(CAST(:project_ids AS uuid[]))
      AND (CAST(:lifecycles AS text[]) IS NULL OR lifecycle = ANY(CAST(:lifecycles AS text[])))
      AND seq > :after_seq
) page
WHERE rank <= :limit
ORDER BY project_id, seq

-- name: revisions_by_ids
SELECT * FROM revisions WHERE id = ANY(CAST(:ids AS uuid[]))

-- name: list_revisions_of_deployments
SELECT * FROM (
    SELECT r.*, row_number() OVER (PARTITION BY deployment_id ORDER BY number) AS rank
    FROM revisions r
    WHERE deployment_id = ANY(CAST(:deployment_ids AS uuid[])) AND number > CAST(:after_number AS bigint)
) page
WHERE rank <= :limit
ORDER BY deployment_id, number

-- name: routes_by_ids
SELECT * FROM routes WHERE id = ANY(CAST(:ids AS uuid[]))

-- name: list_routes_of_deployments
SELECT * FROM routes
WHERE deployment_id = ANY(CAST(:deployment_ids AS uuid[]))
  AND (CAST(:statuses AS text[]) IS NULL OR status = ANY(CAST(:statuses AS text[])))
  AND (CAST(:traffic_status AS text) IS NULL OR traffic_status = CAST(:traffic_status AS text))
ORDER BY deployment_id, seq

-- name: list_history_of_deployments
-- Newest first: the cursor is the `seq` below which the page starts.
SELECT * FROM (
    SELECT h.*, row_number() OVER (PARTITION BY deployment_id ORDER BY seq DESC) AS rank
    FROM deployment_history h
    WHERE deployment_id = ANY(CAST(:deployment_ids AS uuid[])) AND seq < :before_seq
) page
WHERE rank <= :limit
ORDER BY deployment_id, seq DESC

-- name: schema_version
SELECT version_num FROM alembic_version

-- Lifecycle. Every change below runs inside a transaction that first locked the deployment row
-- (lock order: deployment, then its routes), so a scheduler, a promotion and a health report never interleave.

-- name: lock_routes_of_deployment
-- Every route not yet TERMINATED, oldest first.
SELECT * FROM routes
WHERE deployment_id = :deployment_id AND status <> 'TERMINATED'
ORDER BY seq
FOR UPDATE

-- name: lock_route
SELECT * FROM routes WHERE id = :id FOR UPDATE

-- name: deployment_of_route
SELECT r.deployment_id FROM routes r JOIN deployments d ON d.id = r.deployment_id
WHERE r.id = :id AND (CAST(:projects AS uuid[]) IS NULL OR d.project_id = ANY(CAST(:projects AS uuid[])))

-- name: revision_numbers
SELECT id, number FROM revisions WHERE id = ANY(CAST(:ids AS uuid[]))

-- name: revision_of_deployment
SELECT * FROM revisions WHERE id = :id AND deployment_id = :deployment_id

-- name: start_rollout
UPDATE deployments
SET lifecycle = 'DEPLOYING', sub_step = 'DEPLOYING_PROVISIONING', deploying_revision_id = :revision_id,
    phase_started_at = now(), attempts = 0, next_check_at = now(), updated_at = now(),
    rollout_epoch = rollout_epoch + 1
WHERE id = :id AND lifecycle IN ('PENDING', 'READY')
RETURNING *

-- name: move_deployment
-- The one way (lifecycle, subStep) changes: guarded by the state the caller saw under its lock.
-- Leaving DEPLOYING clears the deploying revision; `swap` first makes it the current one.
-- The same statement writes the transition's history row and wakes schedulers (NOTIFY is delivered at commit):
-- no transition without its history, and one round trip for all three.
WITH moved AS (
    UPDATE deployments
    SET lifecycle = :to_lifecycle,
        sub_step = :to_sub_step,
        current_revision_id = CASE WHEN :swap THEN deploying_revision_id ELSE current_revision_id END,
        deploying_revision_id = CASE WHEN :to_lifecycle = 'DEPLOYING' THEN deploying_revision_id END,
        phase_started_at = now(),
        attempts = 0,
        next_check_at = CASE WHEN :check_now THEN now() ELSE CAST(:next_check_at AS timestamptz) END,
        updated_at = now()
    WHERE id = :id AND lifecycle = :from_lifecycle AND sub_step IS NOT DISTINCT FROM CAST(:from_sub_step AS text)
    RETURNING *
), recorded AS (
    INSERT INTO deployment_history (
        deployment_id, phase, from_lifecycle, to_lifecycle, from_sub_step, to_sub_step, result, message, error_code,
        actor, attempts
    )
    SELECT id, :phase, :from_lifecycle, :to_lifecycle, :from_sub_step, :to_sub_step, :result, :message, :error_code,
           :actor, 1
    FROM moved
)
SELECT moved.*, pg_notify('switchover_deployments', CAST(moved.id AS text)) AS notified  -- notifications.CHANNEL
FROM moved

-- name: count_retry
UPDATE deployments
SET attempts = attempts + 1, next_check_at = CAST(:next_check_at AS timestamptz), updated_at = now()
WHERE id = :id
RETURNING attempts

-- name: schedule_check
UPDATE deployments SET next_check_at = CAST(:next_check_at AS timestamptz) WHERE id = :id

-- name: wake_deployment
-- Something changed that the scheduler should look at now.
UPDATE deployments SET next_check_at = now() WHERE id = :id AND lifecycle <> 'DESTROYED'

-- name: set_replicas
UPDATE deployments
SET replicas = :replicas, next_check_at = now(), updated_at = now()
WHERE id = :id
RETURNING *

-- name: create_routes
INSERT INTO routes (deployment_id, revision_id)
SELECT :deployment_id, :revision_id FROM generate_series(1, :count)
RETURNING *

-- name: terminate_routes
UPDATE routes
SET status = 'TERMINATING', traffic_status = 'INACTIVE', traffic_ratio = 0, terminate_after = NULL, updated_at = now()
WHERE id = ANY(CAST(:ids AS uuid[])) AND status NOT IN ('TERMINATING', 'TERMINATED')
RETURNING *

-- name: route_traffic
-- Give these routes `ratio` of the traffic each; they stop waiting for a drain.
UPDATE routes
SET traffic_status = 'ACTIVE', traffic_ratio = :ratio, terminate_after = NULL, updated_at = now()
WHERE id = ANY(CAST(:ids AS uuid[]))
RETURNING *

-- name: switch_routes
-- A promotion's route changes in one round trip: the promoted routes take `ratio` of the traffic each (and stop
-- waiting for a drain); the blue ones keep running without traffic for `delay` seconds, so the promotion can be
-- reverted. Each row says which it was, with the numbers of the revision promoted and of the one it replaces.
WITH numbers AS (
    SELECT (SELECT number FROM revisions WHERE id = CAST(:new_revision_id AS uuid)) AS new_revision_number,
           (SELECT number FROM revisions WHERE id = CAST(:old_revision_id AS uuid)) AS old_revision_number
), promoted AS (
    UPDATE routes
    SET traffic_status = 'ACTIVE', traffic_ratio = :ratio, terminate_after = NULL, updated_at = now()
    WHERE id = ANY(CAST(:ids AS uuid[]))
    RETURNING *
), drained AS (
    UPDATE routes
    SET traffic_status = 'INACTIVE', traffic_ratio = 0,
        terminate_after = now() + make_interval(secs => :delay), updated_at = now()
    WHERE id = ANY(CAST(:drain_ids AS uuid[]))
    RETURNING *
)
SELECT promoted.*, true AS is_promoted, numbers.* FROM promoted, numbers
UNION ALL
SELECT drained.*, false AS is_promoted, numbers.* FROM drained, numbers

-- name: keep_warm_without_traffic
-- Blue routes after a promotion: no traffic, kept up for `delay` seconds so the promotion can be reverted.
UPDATE routes
SET traffic_status = 'INACTIVE', traffic_ratio = 0,
    terminate_after = now() + make_interval(secs => :delay), updated_at = now()
WHERE id = ANY(CAST(:ids AS uuid[]))
RETURNING *

-- name: report_route_health
UPDATE routes
SET status = :status,
    endpoint_url = COALESCE(CAST(:endpoint_url AS text), endpoint_url),
    traffic_status = CASE WHEN :status IN ('FAILED_TO_START', 'TERMINATED') THEN 'INACTIVE' ELSE traffic_status END,
    traffic_ratio = CASE WHEN :status IN ('FAILED_TO_START', 'TERMINATED') THEN 0 ELSE traffic_ratio END,
    terminate_after = CASE WHEN :status = 'TERMINATED' THEN NULL ELSE terminate_after END,
    updated_at = now()
WHERE id = :id
RETURNING *

-- name: retry_of_this_phase
-- The row that retries of the current phase merge into (route health notes may stand between them).
SELECT * FROM deployment_history
WHERE deployment_id = :deployment_id AND phase = :phase AND result = 'NEED_RETRY' AND created_at >= :since
ORDER BY seq DESC
LIMIT 1

-- name: merge_retry_into_history
UPDATE deployment_history
SET attempts = :attempts, message = :message, error_code = :error_code, updated_at = now()
WHERE id = :id

-- name: notify_change
-- Delivered at commit: wakes schedulers (and any other listener) without polling.
SELECT pg_notify('switchover_deployments', CAST(:deployment_id AS text))  -- store.notifications.CHANNEL

-- name: claim_due_deployment
-- One deployment whose check is due, locked for this transaction; others' claims are skipped, not waited for.
-- Its routes are locked by a second statement (lock_routes_of_deployment), on purpose: a statement reads one
-- snapshot, and when this claim waits out a concurrent change to the deployment it returns the changed row, while a
-- join in the same statement would miss the routes that change inserted.
SELECT d.*, now() AS database_now
FROM deployments d
WHERE next_check_at <= now()
ORDER BY next_check_at
LIMIT 1
FOR UPDATE SKIP LOCKED

-- name: database_now
SELECT now()

-- name: withdraw_traffic_except
UPDATE routes
SET traffic_status = 'INACTIVE', traffic_ratio = 0, updated_at = now()
WHERE deployment_id = :deployment_id AND traffic_status = 'ACTIVE' AND NOT (id = ANY(CAST(:ids AS uuid[])))

-- name: lock_deployment_if_free
SELECT d.*, now() AS database_now FROM deployments d WHERE id = :id FOR UPDATE SKIP LOCKED

-- name: set_strategy
UPDATE deployments
SET strategy_type = :strategy_type, auto_promote = :auto_promote, promote_delay_seconds = :promote_delay_seconds,
    promotion_timeout_seconds = :promotion_timeout_seconds, scale_down_delay_seconds = :scale_down_delay_seconds,
    max_surge_count = :max_surge_count, max_surge_percent = :max_surge_percent,
    max_unavailable_count = :max_unavailable_count, max_unavailable_percent = :max_unavailable_percent,
    provisioning_timeout_seconds = :provisioning_timeout_seconds, max_retries = :max_retries,
    pre_promotion_analysis = :pre_promotion_analysis, post_promotion_analysis = :post_promotion_analysis,
    shadow = :shadow, required_approvals = :required_approvals, updated_at = now()
WHERE id = :id
RETURNING *

-- Runtime: the local process runtime and the health checker. These touch one route row at a time and never wait
-- for a lock (SKIP LOCKED), so they cannot deadlock with the lifecycle's deployment-then-routes order.

-- name: claim_routes_to_start
SELECT r.*, v.image, v.number AS revision_number, v.env, v.health_check_path
FROM routes r JOIN revisions v ON v.id = r.revision_id
WHERE r.status = 'PROVISIONING' AND r.runtime_ref IS NULL
ORDER BY r.seq
LIMIT :limit
FOR UPDATE OF r SKIP LOCKED

-- name: attach_runtime
UPDATE routes SET runtime_ref = :runtime_ref, endpoint_url = :endpoint_url, updated_at = now()
WHERE id = :id
RETURNING *

-- name: routes_with_runtime
-- Routes a runtime may have to watch or stop: every route not TERMINATED that has a process or must stop.
SELECT r.*, v.health_check_path
FROM routes r JOIN revisions v ON v.id = r.revision_id
WHERE r.status <> 'TERMINATED' AND (r.runtime_ref IS NOT NULL OR r.status = 'TERMINATING')
ORDER BY r.seq

-- name: routes_to_probe
SELECT r.*, v.health_check_path
FROM routes r JOIN revisions v ON v.id = r.revision_id
WHERE r.status IN ('PROVISIONING', 'HEALTHY', 'UNHEALTHY', 'DEGRADED') AND r.endpoint_url IS NOT NULL
ORDER BY r.seq

-- name: traffic_table
-- Where each live deployment's traffic goes now, by name (the proxy's routing table), with the revision each route
-- serves (the proxy counts what it forwards per revision). `preview` rows are the HEALTHY routes of the revision
-- being deployed, for requests that ask for it (SPEC §6, Preview); their ratio is left to the proxy (equal shares).
-- A preview row also carries the deployment's shadow spec when its green routes take a mirror of the traffic: a
-- blue-green rollout with a shadow spec and a revision serving (SPEC §6, Shadow traffic; none on a first deploy).
-- Every row carries the deployment's rollout epoch: what the proxy mirrors is counted for that rollout only.
SELECT d.name, d.id AS deployment_id, r.id AS route_id, r.endpoint_url, r.traffic_ratio,
       r.revision_id, v.number AS revision_number, false AS preview, CAST(NULL AS jsonb) AS shadow, d.rollout_epoch,
       d.seq AS deployment_seq
FROM deployments d JOIN routes r ON r.deployment_id = d.id JOIN revisions v ON v.id = r.revision_id
WHERE d.lifecycle IN ('READY', 'DEPLOYING') AND r.traffic_status = 'ACTIVE' AND r.endpoint_url IS NOT NULL
UNION ALL
SELECT d.name, d.id, r.id, r.endpoint_url, 1.0, r.revision_id, v.number, true,
       CASE WHEN d.strategy_type = 'BLUE_GREEN' AND d.current_revision_id IS NOT NULL THEN d.shadow END,
       d.rollout_epoch, d.seq
FROM deployments d JOIN routes r ON r.deployment_id = d.id AND r.revision_id = d.deploying_revision_id
     JOIN revisions v ON v.id = r.revision_id
WHERE d.lifecycle = 'DEPLOYING' AND r.status = 'HEALTHY' AND r.endpoint_url IS NOT NULL
-- Oldest deployment first: where two projects' live deployments share a name, the oldest owns the path.
ORDER BY 8, 11, 3

-- name: share_within_revision
-- The share a stopped route had goes to the ACTIVE routes of its revision; how many there were (0: none left).
WITH same AS (
    SELECT id FROM routes
    WHERE deployment_id = :deployment_id AND revision_id = :revision_id AND traffic_status = 'ACTIVE'
), shared AS (
    UPDATE routes SET traffic_ratio = traffic_ratio + CAST(:lost AS double precision) / (SELECT count(*) FROM same)
    WHERE id IN (SELECT id FROM same)
    RETURNING id
)
SELECT count(*) FROM shared

-- name: share_traffic_equally
UPDATE routes
SET traffic_ratio = 1.0 / (SELECT count(*) FROM routes WHERE deployment_id = :deployment_id AND traffic_status = 'ACTIVE')
WHERE deployment_id = :deployment_id AND traffic_status = 'ACTIVE'

-- name: detach_runtime
UPDATE routes SET runtime_ref = NULL, endpoint_url = NULL, updated_at = now()
WHERE id = :id AND status NOT IN ('TERMINATING', 'TERMINATED')

-- name: set_current_revision
-- A revert: the revision serving changes, and so does the epoch analysis runs judge.
UPDATE deployments
SET current_revision_id = :revision_id, next_check_at = CAST(:next_check_at AS timestamptz), updated_at = now(),
    rollout_epoch = rollout_epoch + 1
WHERE id = :id AND lifecycle = 'READY'
RETURNING *

-- Events: history rows as subscribers see them.

-- name: history_seq_of
-- An event of a project outside :project_ids is not found: the caller may not read it.
SELECT h.seq FROM deployment_history h JOIN deployments d ON d.id = h.deployment_id
WHERE h.id = :id AND (CAST(:project_ids AS uuid[]) IS NULL OR d.project_id = ANY(CAST(:project_ids AS uuid[])))

-- name: history_events
-- History rows after a position, of one deployment, of some projects, or of all (NULL filters), oldest first.
SELECT h.*, d.project_id
FROM deployment_history h JOIN deployments d ON d.id = h.deployment_id
WHERE h.seq > :after_seq
  AND (CAST(:deployment_id AS uuid) IS NULL OR h.deployment_id = CAST(:deployment_id AS uuid))
  AND (CAST(:project_ids AS uuid[]) IS NULL OR d.project_id = ANY(CAST(:project_ids AS uuid[])))
ORDER BY h.seq
LIMIT :limit

-- name: history_event_by_seq
-- One history row, if it matches the same filters as history_events.
SELECT h.*, d.project_id
FROM deployment_history h JOIN deployments d ON d.id = h.deployment_id
WHERE h.seq = :seq
  AND (CAST(:deployment_id AS uuid) IS NULL OR h.deployment_id = CAST(:deployment_id AS uuid))
  AND (CAST(:project_ids AS uuid[]) IS NULL OR d.project_id = ANY(CAST(:project_ids AS uuid[])))

-- Analysis runs (SPEC §6). Lock order as everywhere: the deployment row first, then its runs.

-- name: complete_running_analysis
-- A background run whose rollout ended without it failing: it passed.
UPDATE analysis_runs
SET phase = 'SUCCESSFUL', next_check_at = NULL, finished_at = now(), updated_at = now()
WHERE deployment_id = :deployment_id AND kind = :kind AND phase = 'RUNNING'
RETURNING *

-- name: end_running_analysis
-- A run of this kind still in progress (of an older revision, or one a person skipped) stops here.
UPDATE analysis_runs
SET phase = 'ERROR', next_check_at = NULL, finished_at = now(), updated_at = now()
WHERE deployment_id = :deployment_id AND kind = :kind AND phase = 'RUNNING'
RETURNING *

-- name: insert_analysis_run
INSERT INTO analysis_runs (deployment_id, revision_id, kind, spec, next_check_at, rollout_epoch)
SELECT :deployment_id, :revision_id, :kind, :spec, now() + make_interval(secs => :delay_seconds), d.rollout_epoch
FROM deployments d WHERE d.id = :deployment_id
RETURNING *

-- name: next_rollout_epoch
-- A promotion: what is judged from now on is the switch (its post-promotion analysis), not what came before.
UPDATE deployments SET rollout_epoch = rollout_epoch + 1 WHERE id = :id RETURNING rollout_epoch

-- name: claim_due_analysis
-- One due check, leased: its next_check_at moves past the lease so that no other scheduler takes it while this one
-- measures, outside any transaction; a scheduler that dies meanwhile leaves it to the next once the lease ends.
UPDATE analysis_runs r
SET next_check_at = now() + make_interval(secs => :lease_seconds), updated_at = now()
FROM deployments d, revisions v
WHERE r.id = (
    SELECT id FROM analysis_runs WHERE next_check_at <= now() ORDER BY next_check_at LIMIT 1 FOR UPDATE SKIP LOCKED
)
  AND d.id = r.deployment_id AND v.id = r.revision_id
RETURNING r.*, d.name AS deployment_name, d.project_id, d.max_retries, v.number AS revision_number

-- name: lock_analysis_run
SELECT * FROM analysis_runs WHERE id = :id FOR UPDATE

-- name: record_measurements
INSERT INTO analysis_measurements (run_id, metric, value, passed, message)
SELECT :run_id, m.metric, m.value, m.passed, m.message
FROM unnest(CAST(:metrics AS text[]), CAST(:values AS double precision[]), CAST(:verdicts AS boolean[]),
            CAST(:messages AS text[])) AS m (metric, value, passed, message)

-- name: update_analysis_run
UPDATE analysis_runs
SET phase = :phase, passed = :passed, failed = :failed, errors = :errors,
    next_check_at = CASE WHEN :phase = 'RUNNING' THEN now() + make_interval(secs => :interval_seconds) END,
    finished_at = CASE WHEN :phase = 'RUNNING' THEN NULL ELSE now() END,
    updated_at = now()
WHERE id = :id
RETURNING *

-- name: analysis_runs_of_epoch
-- The newest run of each kind the deployment's current rollout epoch started.
SELECT DISTINCT ON (r.kind) r.* FROM analysis_runs r JOIN deployments d ON d.id = r.deployment_id
WHERE r.deployment_id = :deployment_id AND r.rollout_epoch = d.rollout_epoch
ORDER BY r.kind, r.seq DESC

-- name: list_analysis_runs_of_deployments
-- Newest first: the cursor is the `seq` below which the page starts.
SELECT * FROM (
    SELECT r.*, row_number() OVER (PARTITION BY deployment_id ORDER BY seq DESC) AS rank
    FROM analysis_runs r
    WHERE deployment_id = ANY(CAST(:deployment_ids AS uuid[])) AND seq < :before_seq
) page
WHERE rank <= :limit
ORDER BY deployment_id, seq DESC

-- name: measurements_of_runs
SELECT * FROM analysis_measurements WHERE run_id = ANY(CAST(:run_ids AS uuid[])) ORDER BY run_id, seq

-- Proxy traffic (SPEC §6 BUILTIN metrics): what every `switchover proxy` forwarded, per revision, in one-second
-- intervals of the database's clock. A row belongs to one proxy process (proxy_id), which alone writes it.

-- name: current_transaction_id
-- Asked inside a transaction before its COMMIT, so that a COMMIT whose answer was lost can be looked up afterwards.
SELECT CAST(pg_current_xact_id() AS text)

-- name: transaction_outcome
-- 'committed', 'aborted' or 'in progress' (PostgreSQL's own record of a recent transaction).
SELECT pg_xact_status(CAST(CAST(:xid AS text) AS xid8))

-- name: add_proxy_traffic
-- Adds one flush's counts of a revision to this proxy's row of the current second (flushes more often than once a
-- second add up in one row). Bucket arrays add element by element.
INSERT INTO proxy_traffic AS t
    (deployment_id, revision_id, interval_start, proxy_id, requests, errors, duration_buckets)
VALUES (:deployment_id, :revision_id, date_trunc('second', now()), :proxy_id, :requests, :errors,
        CAST(:duration_buckets AS bigint[]))
ON CONFLICT (deployment_id, revision_id, interval_start, proxy_id) DO UPDATE
SET requests = t.requests + EXCLUDED.requests,
    errors = t.errors + EXCLUDED.errors,
    duration_buckets = ARRAY(
        SELECT coalesce(a, 0) + coalesce(b, 0)
        FROM unnest(t.duration_buckets, EXCLUDED.duration_buckets) WITH ORDINALITY AS u(a, b, i)
        ORDER BY i
    )

-- name: revision_figures
-- A revision's traffic summed over proxies, over the one-second intervals that ended within the last :seconds (and
-- the one still open), by the database's clock.
WITH recent AS (
    SELECT requests, errors, duration_buckets
    FROM proxy_traffic
    WHERE deployment_id = :deployment_id AND revision_id = :revision_id
      AND interval_start + interval '1 second' > now() - make_interval(secs => :seconds)
)
SELECT (SELECT CAST(coalesce(sum(requests), 0) AS bigint) FROM recent) AS requests,
       (SELECT CAST(coalesce(sum(errors), 0) AS bigint) FROM recent) AS errors,
       ARRAY(
           SELECT CAST(sum(b) AS bigint) FROM recent, unnest(recent.duration_buckets) WITH ORDINALITY AS u(b, i)
           GROUP BY i ORDER BY i
       ) AS duration_buckets

-- name: latest_analysis_runs_of_deployments
-- The newest run of each kind of each deployment's current rollout epoch.
SELECT DISTINCT ON (r.deployment_id, r.kind) r.* FROM analysis_runs r JOIN deployments d ON d.id = r.deployment_id
WHERE r.deployment_id = ANY(CAST(:deployment_ids AS uuid[])) AND r.rollout_epoch = d.rollout_epoch
ORDER BY r.deployment_id, r.kind, r.seq DESC

-- Canary (SPEC §6). Inside the transaction that locked the deployment row (then its routes).

-- name: set_canary_strategy
-- The canary settings of a strategy (written with the rest of it, by create_deployment or set_strategy).
UPDATE deployments SET canary = :canary WHERE id = :id
RETURNING *

-- name: set_canary_position
-- Where a canary rollout stands: the step in progress and the deploying revision's percent (both NULL: none runs).
UPDATE deployments
SET canary_step_index = CAST(:step_index AS integer), canary_weight = CAST(:weight AS integer), updated_at = now()
WHERE id = :id
RETURNING *

-- name: set_route_ratios
-- Each listed route takes its own share of the traffic (and stops waiting for a drain); every other route of the
-- deployment takes none. The shares add up to 1: the caller computes them.
WITH shares AS (
    SELECT s.id, s.ratio
    FROM unnest(CAST(:ids AS uuid[]), CAST(:ratios AS double precision[])) AS s (id, ratio)
), given AS (
    UPDATE routes r
    SET traffic_status = 'ACTIVE', traffic_ratio = shares.ratio, terminate_after = NULL, updated_at = now()
    FROM shares
    WHERE r.id = shares.id AND r.deployment_id = :deployment_id
    RETURNING r.id
)
UPDATE routes
SET traffic_status = 'INACTIVE', traffic_ratio = 0, updated_at = now()
WHERE deployment_id = :deployment_id AND traffic_status = 'ACTIVE' AND NOT (id = ANY(CAST(:ids AS uuid[])))

-- Shadow traffic (SPEC §6): what every `switchover proxy` mirrored to the revision being deployed and how its answers
-- compared with blue's, per one-second interval of the database's clock and proxy (written with proxy_traffic, in
-- the same flush transaction), and the newest disagreements of each revision.

-- name: add_shadow_traffic
INSERT INTO shadow_traffic AS t
    (deployment_id, revision_id, rollout_epoch, interval_start, proxy_id, agreed, disagreed, green_errors)
VALUES (:deployment_id, :revision_id, :rollout_epoch, date_trunc('second', now()), :proxy_id, :agreed, :disagreed,
        :green_errors)
ON CONFLICT (deployment_id, revision_id, rollout_epoch, interval_start, proxy_id) DO UPDATE
SET agreed = t.agreed + EXCLUDED.agreed,
    disagreed = t.disagreed + EXCLUDED.disagreed,
    green_errors = t.green_errors + EXCLUDED.green_errors

-- name: add_shadow_sample
INSERT INTO shadow_samples (deployment_id, revision_id, rollout_epoch, request, blue_answer, green_answer)
VALUES (:deployment_id, :revision_id, :rollout_epoch, :request, :blue_answer, :green_answer)

-- name: trim_shadow_samples
-- Only the newest :keep samples of a rollout stay; those of the revision's earlier rollouts go (never read again).
DELETE FROM shadow_samples
WHERE deployment_id = :deployment_id AND revision_id = :revision_id AND (rollout_epoch < :rollout_epoch OR (
    rollout_epoch = :rollout_epoch AND seq NOT IN (
        SELECT seq FROM shadow_samples
        WHERE deployment_id = :deployment_id AND revision_id = :revision_id AND rollout_epoch = :rollout_epoch
        ORDER BY seq DESC LIMIT :keep
    )
))

-- name: shadow_figures
-- A rollout's mirrored requests summed over proxies, over the one-second intervals that ended within the last
-- `seconds` (and the one still open); all of them when it is NULL. No epoch given: the deployment's current one.
SELECT CAST(coalesce(sum(agreed), 0) AS bigint) AS agreed,
       CAST(coalesce(sum(disagreed), 0) AS bigint) AS disagreed,
       CAST(coalesce(sum(green_errors), 0) AS bigint) AS green_errors
FROM shadow_traffic
WHERE deployment_id = :deployment_id AND revision_id = :revision_id
  AND rollout_epoch = coalesce(CAST(:rollout_epoch AS bigint),
                               (SELECT rollout_epoch FROM deployments WHERE id = :deployment_id))
  AND (CAST(:seconds AS double precision) IS NULL
       OR interval_start + interval '1 second' > now() - make_interval(secs => CAST(:seconds AS double precision)))

-- name: shadow_samples_of_revision
-- Newest first, of one rollout (no epoch given: the deployment's current one).
SELECT request, blue_answer, green_answer FROM shadow_samples
WHERE deployment_id = :deployment_id AND revision_id = :revision_id
  AND rollout_epoch = coalesce(CAST(:rollout_epoch AS bigint),
                               (SELECT rollout_epoch FROM deployments WHERE id = :deployment_id))
ORDER BY seq DESC LIMIT :keep

-- name: shadow_figures_of_deployments
-- For `Deployment.shadowStats`, batched: each deployment's current rollout, if it deploys a revision, summed over
-- proxies and intervals.
SELECT d.id AS deployment_id, d.deploying_revision_id AS revision_id, d.rollout_epoch,
       CAST(coalesce(sum(t.agreed), 0) AS bigint) AS agreed,
       CAST(coalesce(sum(t.disagreed), 0) AS bigint) AS disagreed,
       CAST(coalesce(sum(t.green_errors), 0) AS bigint) AS green_errors
FROM deployments d
LEFT JOIN shadow_traffic t
       ON t.deployment_id = d.id AND t.revision_id = d.deploying_revision_id AND t.rollout_epoch = d.rollout_epoch
WHERE d.id = ANY(CAST(:deployment_ids AS uuid[])) AND d.deploying_revision_id IS NOT NULL
GROUP BY d.id

-- name: shadow_samples_of_deployments
-- The newest :keep samples of each deployment's current rollout, newest first.
SELECT deployment_id, request, blue_answer, green_answer FROM (
    SELECT s.*, row_number() OVER (PARTITION BY s.deployment_id ORDER BY s.seq DESC) AS n
    FROM shadow_samples s JOIN deployments d
      ON d.id = s.deployment_id AND s.revision_id = d.deploying_revision_id AND s.rollout_epoch = d.rollout_epoch
    WHERE d.id = ANY(CAST(:deployment_ids AS uuid[]))
) newest
WHERE n <= :keep
ORDER BY deployment_id, seq DESC

-- name: shadow_intervals_of_deployments
-- Agreement over time (the dashboard's): each deployment's current rollout summed over proxies in :slots intervals of
-- :step seconds of the database's clock, aligned on multiples of :step, the last one still open; oldest first, empty
-- intervals included (zeros).
WITH slots AS (
    SELECT to_timestamp(floor(CAST(extract(epoch FROM now()) AS double precision) / :step) * :step
                        - CAST(:step AS double precision) * n) AS start
    FROM generate_series(0, CAST(:slots AS integer) - 1) AS n
)
SELECT d.id AS deployment_id, s.start,
       CAST(coalesce(sum(t.agreed), 0) AS bigint) AS agreed,
       CAST(coalesce(sum(t.disagreed), 0) AS bigint) AS disagreed,
       CAST(coalesce(sum(t.green_errors), 0) AS bigint) AS green_errors
FROM deployments d CROSS JOIN slots s
LEFT JOIN shadow_traffic t
       ON t.deployment_id = d.id AND t.revision_id = d.deploying_revision_id AND t.rollout_epoch = d.rollout_epoch
      AND t.interval_start >= s.start AND t.interval_start < s.start + make_interval(secs => :step)
WHERE d.id = ANY(CAST(:deployment_ids AS uuid[])) AND d.deploying_revision_id IS NOT NULL
GROUP BY d.id, s.start
ORDER BY d.id, s.start

-- name: has_serving_revision
-- Whether a deployment has a revision serving (a blue, for shadow traffic to mirror from).
SELECT current_revision_id IS NOT NULL FROM deployments WHERE id = :deployment_id

-- ---------------------------------------------------------------------------------------------------------------
-- `switchover haproxy` (SPEC §7): what HAProxy's backends should hold.
-- ---------------------------------------------------------------------------------------------------------------

-- name: haproxy_servers
-- One row per server HAProxy should have: every route of a live deployment with an endpoint that is running or
-- takes traffic (INACTIVE ones too, at weight 0, until they stop), and, as `preview` rows, the HEALTHY routes of
-- the revision being deployed (the preview backend's, equal weights). `active`: the route takes traffic, exactly
-- as the proxy's `traffic_table` decides. Oldest deployment first: when two projects use one name, it owns it.
-- :deployment_ids NULL: every backend; else only the backends named like those deployments (a NOTIFY's).
WITH names AS (
    SELECT DISTINCT name FROM deployments
    WHERE CAST(:deployment_ids AS uuid[]) IS NULL OR id = ANY(CAST(:deployment_ids AS uuid[]))
)
SELECT d.name, d.id AS deployment_id, r.id AS route_id, r.endpoint_url, r.traffic_ratio,
       d.lifecycle IN ('READY', 'DEPLOYING') AND r.traffic_status = 'ACTIVE' AS active, false AS preview,
       d.created_at
FROM deployments d JOIN routes r ON r.deployment_id = d.id
WHERE d.lifecycle <> 'DESTROYED' AND r.endpoint_url IS NOT NULL AND d.name IN (SELECT name FROM names)
  AND (r.status IN ('PROVISIONING', 'HEALTHY', 'UNHEALTHY', 'DEGRADED')
       OR (d.lifecycle IN ('READY', 'DEPLOYING') AND r.traffic_status = 'ACTIVE'))
UNION ALL
SELECT d.name, d.id, r.id, r.endpoint_url, 1.0, true, true, d.created_at
FROM deployments d JOIN routes r ON r.deployment_id = d.id AND r.revision_id = d.deploying_revision_id
WHERE d.lifecycle = 'DEPLOYING' AND r.status = 'HEALTHY' AND r.endpoint_url IS NOT NULL
  AND d.name IN (SELECT name FROM names)
ORDER BY 8, 2, 7, 3

-- Webhooks (SPEC §8): subscriptions of a project's deployment history, and their deliveries, an outbox that a
-- trigger on deployment_history fills in the history row's own transaction (migration 0009). Only the delivery claim
-- reads a webhook's secret.

-- name: create_webhook
INSERT INTO webhooks (project_id, url, events, secret, created_by)
VALUES (:project_id, :url, CAST(:events AS text[]), :secret, :actor)
RETURNING id, seq, project_id, url, events, created_by, created_at, updated_at

-- name: webhooks_by_ids
SELECT id, seq, project_id, url, events, created_by, created_at, updated_at
FROM webhooks WHERE id = ANY(CAST(:ids AS uuid[])) AND deleted_at IS NULL

-- name: webhooks_of_project
SELECT id, seq, project_id, url, events, created_by, created_at, updated_at
FROM webhooks WHERE project_id = :project_id AND deleted_at IS NULL
ORDER BY seq

-- name: delete_webhook
UPDATE webhooks SET deleted_at = now(), updated_at = now()
WHERE id = :id AND deleted_at IS NULL
RETURNING id, seq, project_id, url, events, created_by, created_at, updated_at

-- name: abandon_webhook_deliveries
-- A deleted webhook sends nothing more: what it still had to send is dead, with the reason.
UPDATE webhook_deliveries
SET status = 'DEAD', next_attempt_at = NULL, last_error = 'the webhook was deleted', updated_at = now()
WHERE webhook_id = :webhook_id AND status = 'PENDING'

-- name: list_deliveries_of_webhook
-- Newest first: the cursor is the `seq` below which the page starts.
SELECT * FROM webhook_deliveries
WHERE webhook_id = :webhook_id AND seq < :before_seq
ORDER BY seq DESC
LIMIT :limit

-- name: project_of_webhook_delivery
-- The project of a delivery of a live webhook (who may act on it).
SELECT w.project_id FROM webhook_deliveries q JOIN webhooks w ON w.id = q.webhook_id
WHERE q.id = :id AND w.deleted_at IS NULL

-- name: lock_webhook_delivery
-- A delivery of a live webhook, locked for the redelivery's transaction.
SELECT q.* FROM webhook_deliveries q JOIN webhooks w ON w.id = q.webhook_id
WHERE q.id = :id AND w.deleted_at IS NULL
FOR UPDATE OF q

-- name: notify_webhook_delivery
-- Delivered at commit: wakes schedulers' delivery loops (store.notifications.WEBHOOK_CHANNEL).
SELECT pg_notify('switchover_webhooks', CAST(:deployment_id AS text))

-- name: redeliver_webhook_delivery
-- A dead delivery goes back to the queue with its own id and a fresh count of attempts; being the oldest pending
-- row of its deployment again, it goes out before the rows behind it.
UPDATE webhook_deliveries
SET status = 'PENDING', attempts = 0, next_attempt_at = now(), updated_at = now()
WHERE id = :id AND status = 'DEAD'
RETURNING *

-- name: claim_due_webhook_delivery
-- One due delivery, leased like an analysis check: attempts + 1 and next_attempt_at past the lease, so that no
-- other scheduler takes it while this one posts it, outside any transaction; a scheduler that dies meanwhile leaves
-- it to the next once the lease ends (at least once). Only the oldest pending row of a webhook and deployment may
-- go: a failing one holds back those behind it, for that deployment only.
UPDATE webhook_deliveries q
SET attempts = q.attempts + 1, next_attempt_at = now() + make_interval(secs => :lease_seconds), updated_at = now()
FROM webhooks w
WHERE q.id = (
    SELECT p.id FROM webhook_deliveries p
    WHERE p.status = 'PENDING' AND p.next_attempt_at <= now()
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries e
          WHERE e.webhook_id = p.webhook_id AND e.deployment_id = p.deployment_id AND e.status = 'PENDING'
            AND e.history_seq < p.history_seq
      )
      AND EXISTS (SELECT 1 FROM webhooks l WHERE l.id = p.webhook_id AND l.deleted_at IS NULL)
    ORDER BY p.next_attempt_at, p.seq
    LIMIT 1
    FOR UPDATE OF p SKIP LOCKED
)
  AND w.id = q.webhook_id
RETURNING q.id, q.webhook_id, q.deployment_id, q.attempts, q.next_attempt_at, q.payload, w.url, w.secret

-- name: record_webhook_attempt
-- Only under the lease this scheduler took: after it ran out, the delivery belongs to whoever claimed it next.
UPDATE webhook_deliveries
SET status = :status, last_error = :last_error, last_status_code = :status_code,
    next_attempt_at = CASE WHEN :status = 'PENDING' THEN now() + make_interval(secs => :retry_in_seconds) END,
    delivered_at = CASE WHEN :status = 'DELIVERED' THEN now() END,
    updated_at = now()
WHERE id = :id AND status = 'PENDING' AND next_attempt_at = :lease_until
RETURNING id

-- Governance (SPEC §8): approvals of the rollout in flight, and freeze windows. An approval belongs to the revision
-- and the rollout epoch (0005) it was given in: a later deploy starts a new epoch, and approvals of earlier ones
-- never count again.

-- name: governance_of_deployments
-- What holds each deployment's promotion besides routes and analyses: the approvals its rollout needs and has
-- (approvers in the order they approved), and the freeze window of its project in force now (the one ending last).
SELECT d.id,
       CASE d.strategy_type
           WHEN 'BLUE_GREEN' THEN d.required_approvals
           WHEN 'CANARY' THEN coalesce(CAST(d.canary ->> 'required_approvals' AS integer), 0)
           ELSE 0
       END AS required,
       ARRAY(
           SELECT a.approver FROM approvals a
           WHERE a.deployment_id = d.id AND a.revision_id = d.deploying_revision_id
             AND a.rollout_epoch = d.rollout_epoch
           ORDER BY a.seq
       ) AS approvers,
       f.id AS freeze_id, f.seq AS freeze_seq, f.project_id AS freeze_project_id, f.starts_at AS freeze_starts_at,
       f.ends_at AS freeze_ends_at, f.reason AS freeze_reason, f.created_by AS freeze_created_by,
       f.created_at AS freeze_created_at
FROM deployments d
LEFT JOIN LATERAL (
    SELECT * FROM freeze_windows w
    WHERE w.project_id = d.project_id AND w.deleted_at IS NULL AND w.starts_at <= now() AND w.ends_at > now()
    ORDER BY w.ends_at DESC
    LIMIT 1
) f ON true
WHERE d.id = ANY(CAST(:ids AS uuid[]))

-- name: insert_approval
-- Nothing when this person already approved this rollout: approving twice counts once.
INSERT INTO approvals (deployment_id, revision_id, rollout_epoch, approver, comment)
SELECT d.id, d.deploying_revision_id, d.rollout_epoch, :approver, :comment
FROM deployments d WHERE d.id = :deployment_id AND d.deploying_revision_id = :revision_id
ON CONFLICT ON CONSTRAINT one_approval_per_person_and_rollout DO NOTHING
RETURNING *

-- name: approval_of_rollout
SELECT a.* FROM approvals a JOIN deployments d ON d.id = a.deployment_id
WHERE a.deployment_id = :deployment_id AND a.revision_id = d.deploying_revision_id
  AND a.rollout_epoch = d.rollout_epoch AND a.approver = :approver

-- name: approvals_of_rollouts
-- The approvals of each deployment's rollout in flight, oldest first (none when nothing is being deployed).
SELECT a.* FROM approvals a JOIN deployments d ON d.id = a.deployment_id
WHERE a.deployment_id = ANY(CAST(:ids AS uuid[])) AND a.revision_id = d.deploying_revision_id
  AND a.rollout_epoch = d.rollout_epoch
ORDER BY a.deployment_id, a.seq

-- name: insert_freeze_window
INSERT INTO freeze_windows (project_id, starts_at, ends_at, reason, created_by)
VALUES (:project_id, :starts_at, :ends_at, :reason, :created_by)
RETURNING *

-- name: freeze_windows_by_ids
SELECT * FROM freeze_windows WHERE id = ANY(CAST(:ids AS uuid[])) AND deleted_at IS NULL

-- name: freeze_windows_of_projects
-- Windows that have not ended yet, soonest first.
SELECT * FROM freeze_windows
WHERE project_id = ANY(CAST(:project_ids AS uuid[])) AND deleted_at IS NULL AND ends_at > now()
ORDER BY project_id, starts_at, seq

-- name: delete_freeze_window
-- Kept, marked deleted, for the record. With :projects, a window of another project is not found.
UPDATE freeze_windows SET deleted_at = now(), deleted_by = :actor
WHERE id = :id AND deleted_at IS NULL
  AND (CAST(:projects AS uuid[]) IS NULL OR project_id = ANY(CAST(:projects AS uuid[])))
RETURNING *

-- name: wake_rollouts_of_project
-- A freeze window was deleted: rollouts it held look again now instead of at its end.
WITH woken AS (
    UPDATE deployments SET next_check_at = now()
    WHERE project_id = :project_id AND lifecycle = 'DEPLOYING'
    RETURNING id
)
SELECT pg_notify('switchover_deployments', CAST(id AS text)) FROM woken  -- store.notifications.CHANNEL

-- name: route_ids_of_revision
-- Every route the revision ever had, stopped ones too: a metrics store keeps their series after they are gone.
SELECT id FROM routes WHERE revision_id = :revision_id ORDER BY created_at, id
