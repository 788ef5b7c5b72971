-- Canary strategy (SPEC §6): its spec (steps, background analysis, scale-down delay), where a canary rollout stands
-- (the step in progress and the weight the deploying revision has), the CANARY type and the PROGRESSING sub-step.

ALTER TABLE deployments
    DROP CONSTRAINT deployments_sub_step_check,
    ADD CONSTRAINT deployments_sub_step_check CHECK (sub_step IN (
        'DEPLOYING_PROVISIONING', 'DEPLOYING_PROGRESSING', 'DEPLOYING_AWAITING_PROMOTION', 'DEPLOYING_ROLLING_BACK'
    )),
    DROP CONSTRAINT deployments_strategy_type_check,
    ADD CONSTRAINT deployments_strategy_type_check CHECK (strategy_type IN ('ROLLING', 'BLUE_GREEN', 'CANARY')),
    -- The CanarySpecInput as validated: steps (each one of set_weight, pause, analysis), analysis,
    -- scale_down_delay_seconds.
    ADD COLUMN canary jsonb CHECK (jsonb_typeof(canary) = 'object'),
    -- Index of the step in progress (0-based; the number of steps: the implicit final 100 % of a full promotion).
    ADD COLUMN canary_step_index integer CHECK (canary_step_index >= 0),
    -- Percent of the traffic the deploying revision has.
    ADD COLUMN canary_weight integer CHECK (canary_weight BETWEEN 0 AND 100),
    ADD CONSTRAINT canary_position_is_whole CHECK ((canary_step_index IS NULL) = (canary_weight IS NULL));
