-- Named queries of the store. Parameters are `:name`; use CAST(... AS type), never `::type`, on a parameter.

-- name: create_deployment
INSERT INTO deployments (
    project_id, name, replicas, strategy_type, auto_promote, promote_delay_seconds, promotion_timeout_seconds,
    scale_down_delay_seconds, max_surge_count, max_surge_percent, max_unavailable_count, max_unavailable_percent,
    provisioning_timeout_seconds, max_retries
) VALUES (
    :project_id, :name, :replicas, :strategy_type, :auto_promote, :promote_delay_seconds, :promotion_timeout_seconds,
    :scale_down_delay_seconds, :max_surge_count, :max_surge_percent, :max_unavailable_count, :max_unavailable_percent,
    :provisioning_timeout_seconds, :max_retries
)
RETURNING *

-- name: lock_deployment
SELECT * FROM deployments WHERE id = :id FOR UPDATE

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
    actor
) VALUES (
    :deployment_id, :phase, :from_lifecycle, :to_lifecycle, :from_sub_step, :to_sub_step, :result, :message,
    :error_code, :actor
)

-- name: deployments_by_ids
SELECT * FROM deployments WHERE id = ANY(CAST(:ids AS uuid[]))

-- name: list_deployments
SELECT * FROM deployments
WHERE (CAST(:project_id AS uuid) IS NULL OR project_id = CAST(:project_id AS uuid))
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
    WHERE deployment_id = ANY(CAST(:deployment_ids AS uuid[])) AND number > :after_number
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
