-- Agent runs (issue 17): a run's status, the cancel request, the conversation position of its
-- last change; messages may belong to a run and may carry an action (a question to the human).

CREATE TABLE runs (
    id uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    agent text NOT NULL,
    status text NOT NULL,
    input_seq bigint,
    metadata jsonb NOT NULL DEFAULT '{}',
    error jsonb,
    activity text,
    queued_behind uuid REFERENCES runs (id) ON DELETE SET NULL,
    cancel_requested_at timestamptz,
    -- The conversation's last_seq when the run last changed: its place on the timeline (frames
    -- follow the message with this seq; a socket resuming with since <= seq gets the run again).
    seq bigint NOT NULL,
    -- Bumped on every change: a client keeps the copy with the highest version.
    version integer NOT NULL DEFAULT 1,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at timestamptz,
    ended_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The last change of status (activity and cancel requests do not count): the stale sweep's.
    status_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- A conversation's runs, newest first (pages), and the ones changed since a seq (resume).
CREATE INDEX runs_conversation_newest ON runs (conversation_id, created_at DESC, id DESC);
CREATE INDEX runs_conversation_seq ON runs (conversation_id, seq);
-- Active runs: the input policy's probe, and the stale sweep (oldest change first).
CREATE INDEX runs_active ON runs (conversation_id) WHERE ended_at IS NULL;
CREATE INDEX runs_unended_by_status_at ON runs (status_at) WHERE ended_at IS NULL;

ALTER TABLE messages ADD COLUMN run_id uuid;
ALTER TABLE messages ADD COLUMN action jsonb;
-- Answers given at or after a seq (a socket resuming with since): action messages only.
CREATE INDEX messages_answered ON messages (conversation_id, ((action ->> 'answered_seq')::bigint))
    WHERE action IS NOT NULL;
