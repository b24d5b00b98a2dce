-- Workflow conversations: an agent product running for a user, with a free-form configuration.

CREATE TABLE workflow_conversations (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_product_id bigint NOT NULL,
    user_id bigint,
    team_id bigint,
    configuration jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(configuration) = 'object'),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- A user's conversations, newest first, one keyset page at a time.
CREATE INDEX workflow_conversations_user_newest
    ON workflow_conversations (user_id, created_at DESC, id DESC);
-- The running ones only: the predicate must match the queries' text exactly to be used.
CREATE INDEX workflow_conversations_user_running
    ON workflow_conversations (user_id, created_at DESC, id DESC)
    WHERE configuration -> 'running' = 'true'::jsonb;
-- Planner statistics: a user's rows usually share one team (so a team filter keeps most of
-- them), and how many rows are running. Without these the planner guesses both far too low and
-- sorts a heavy user's rows instead of walking the index in order.
CREATE STATISTICS workflow_conversations_user_team (dependencies)
    ON user_id, team_id FROM workflow_conversations;
CREATE STATISTICS workflow_conversations_running
    ON (configuration -> 'running') FROM workflow_conversations;
