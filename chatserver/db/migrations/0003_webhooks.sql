-- Webhooks: one endpoint per conversation with a callback_url, the delivery outbox, the attempt log.

CREATE TABLE webhook_endpoints (
    conversation_id uuid PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    -- NULL once config.callback_url is removed: the secret and the log stay, nothing is queued.
    url text,
    secret text NOT NULL,
    -- After a rotation the previous secret signs too, until previous_secret_expires_at.
    previous_secret text,
    previous_secret_expires_at timestamptz,
    -- Set when the first failure of an unbroken run of failures happened; cleared by a success.
    failing_since timestamptz,
    disabled_at timestamptz,
    disabled_reason text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY,
    -- Outbox order: a delivery inserted in a later transaction of the same conversation (whose
    -- message row lock serialises writers) always gets a larger position.
    position bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    conversation_id uuid NOT NULL REFERENCES webhook_endpoints (conversation_id) ON DELETE CASCADE,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    -- pending -> succeeded | failed
    status text NOT NULL DEFAULT 'pending',
    attempt_count integer NOT NULL DEFAULT 0,
    -- Failed scheduled attempts: the index into the retry schedule.
    scheduled_failures integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- A dispatcher's claim: nobody else sends this delivery before locked_until.
    locked_by text,
    locked_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz
);
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (conversation_id, position)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (conversation_id, position DESC);

CREATE TABLE webhook_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    trigger text NOT NULL,
    -- The HTTP status; 0 when no response came (network error, timeout, refused address).
    status_code integer NOT NULL,
    response_body text NOT NULL DEFAULT '',
    error text,
    duration_ms integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempt);

-- Wake dispatchers (LISTEN chatserver_webhooks) when deliveries are queued; they poll as well.
-- Per row, so a message of a conversation without a webhook (an INSERT of no rows) wakes nobody;
-- Postgres folds the identical notifications of one transaction into one.
CREATE FUNCTION notify_webhook_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chatserver_webhooks', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER webhook_deliveries_notify AFTER INSERT ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION notify_webhook_deliveries();
