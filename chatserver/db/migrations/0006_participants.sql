-- Participants: who is in a conversation, what kind of party, their role and read horizon.
-- A removed participant keeps its row with left_at set, so its tokens are told apart from tokens of
-- a participant never seen (created on first use); its messages keep their author (on the message).
CREATE TABLE participants (
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    id text NOT NULL,
    kind text NOT NULL,        -- user | agent | operator
    name text NOT NULL,
    role text NOT NULL,        -- member | observer
    metadata jsonb NOT NULL DEFAULT '{}',
    joined_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Read horizon: every message up to this seq counts as read. Only moves forward; posting a
    -- message moves its author's to that message, so unread = conversations.last_seq - this.
    last_read_seq bigint NOT NULL DEFAULT 0,
    left_at timestamptz,
    PRIMARY KEY (conversation_id, id)
);
-- "The conversations alice is in" (GET /conversations?participant=alice).
CREATE INDEX participants_by_participant ON participants (id, conversation_id)
    WHERE left_at IS NULL;

-- Who wrote a message, decided by the server (NULL on messages stored before this migration:
-- rendered from created_by). Kinds: user | agent | operator | integration | system.
ALTER TABLE messages
    ADD COLUMN author_id text,
    ADD COLUMN author_kind text,
    ADD COLUMN author_name text;

-- An agent key (`chatserver keys create --agent NAME`) writes as participant NAME.
ALTER TABLE api_keys ADD COLUMN agent text;
