-- Team-wide webhook endpoints beside the per-conversation callback_url endpoint, in one table.
--
-- Every endpoint has an id; a conversation's callback endpoint keeps its conversation's id as its
-- own (so existing rows and the per-conversation API need no lookup), a team endpoint gets a
-- random one. Deliveries point at their endpoint; their queue is (endpoint, conversation): FIFO
-- per conversation within each endpoint, while one team endpoint still takes the conversations of
-- its team in parallel.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_conversation_id_fkey;
ALTER TABLE webhook_endpoints DROP CONSTRAINT webhook_endpoints_pkey;
ALTER TABLE webhook_endpoints ADD COLUMN id uuid;
UPDATE webhook_endpoints SET id = conversation_id;
ALTER TABLE webhook_endpoints
    ALTER COLUMN id SET NOT NULL,
    ADD PRIMARY KEY (id),
    ALTER COLUMN conversation_id DROP NOT NULL,
    ADD CONSTRAINT webhook_endpoints_conversation_key UNIQUE (conversation_id),
    -- A team endpoint's team (NULL: the admin's conversations without a team).
    ADD COLUMN team_id bigint,
    -- A team endpoint's filter: exact event types and `prefix.*`; NULL on callback endpoints.
    ADD COLUMN event_types text[],
    ADD COLUMN description text NOT NULL DEFAULT '',
    ADD CONSTRAINT webhook_endpoints_kind CHECK ((conversation_id IS NULL) = (event_types IS NOT NULL));
CREATE INDEX webhook_endpoints_team ON webhook_endpoints (team_id) WHERE conversation_id IS NULL;

ALTER TABLE webhook_deliveries ADD COLUMN endpoint_id uuid;
UPDATE webhook_deliveries SET endpoint_id = conversation_id;
ALTER TABLE webhook_deliveries
    ALTER COLUMN endpoint_id SET NOT NULL,
    ADD CONSTRAINT webhook_deliveries_endpoint_fkey FOREIGN KEY (endpoint_id)
        REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- The event's conversation (NULL for a team endpoint's webhook.test).
    ALTER COLUMN conversation_id DROP NOT NULL,
    ADD CONSTRAINT webhook_deliveries_conversation_fkey FOREIGN KEY (conversation_id)
        REFERENCES conversations (id) ON DELETE CASCADE;
DROP INDEX webhook_deliveries_queue;
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (endpoint_id, conversation_id, position)
    WHERE status = 'pending';
DROP INDEX webhook_deliveries_log;
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (endpoint_id, position DESC);
