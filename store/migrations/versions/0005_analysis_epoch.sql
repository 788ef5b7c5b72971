-- Which rollout an analysis run judges. Each deploy, promotion and revert starts a new epoch of the deployment; a run
-- belongs to the epoch it started in, so a run of an earlier attempt (the same revision deployed again, a promotion
-- reverted and restored) never decides a later one.

ALTER TABLE deployments ADD COLUMN rollout_epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE analysis_runs ADD COLUMN rollout_epoch bigint NOT NULL DEFAULT 0;
CREATE INDEX analysis_runs_epoch ON analysis_runs (deployment_id, rollout_epoch, kind, seq);
