-- Shadow statistics per rollout, not per revision (SPEC §6: "a new deploy starts from zero"): the same revision
-- deployed again after a rollback must not inherit the counts and samples of its earlier attempt. Counts and
-- samples carry the deployment's rollout_epoch (0005) at the time the proxy mirrored them; readers take one epoch.

ALTER TABLE shadow_traffic ADD COLUMN rollout_epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE shadow_samples ADD COLUMN rollout_epoch bigint NOT NULL DEFAULT 0;

-- Rows already written for a revision still being deployed belong to its rollout in progress; older ones keep
-- epoch 0, which no deploy reaches (start_rollout increments first), so they are never read again.
UPDATE shadow_traffic t SET rollout_epoch = d.rollout_epoch
FROM deployments d WHERE d.id = t.deployment_id AND d.deploying_revision_id = t.revision_id;
UPDATE shadow_samples s SET rollout_epoch = d.rollout_epoch
FROM deployments d WHERE d.id = s.deployment_id AND d.deploying_revision_id = s.revision_id;

ALTER TABLE shadow_traffic DROP CONSTRAINT shadow_traffic_pkey,
    ADD PRIMARY KEY (deployment_id, revision_id, rollout_epoch, interval_start, proxy_id);

DROP INDEX shadow_samples_revision;
CREATE INDEX shadow_samples_rollout ON shadow_samples (deployment_id, revision_id, rollout_epoch, seq);
