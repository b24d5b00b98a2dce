-- Foundation: API keys, conversations and their messages.

CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    team_id bigint,
    prefix text NOT NULL UNIQUE,
    key_hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE conversations (
    id uuid PRIMARY KEY,
    channel text NOT NULL,
    usecase text NOT NULL,
    config jsonb NOT NULL DEFAULT '{}',
    metadata jsonb NOT NULL DEFAULT '{}',
    team_id bigint,
    -- The highest seq handed out; the next message takes last_seq + 1 under this row's lock.
    last_seq bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX conversations_newest ON conversations (created_at DESC, id DESC);
CREATE INDEX conversations_team_newest ON conversations (team_id, created_at DESC, id DESC);

CREATE TABLE messages (
    id uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    client_id text,
    content text NOT NULL,
    content_type text NOT NULL,
    filename text,
    type text NOT NULL,
    channel text NOT NULL,
    status text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT messages_seq_unique UNIQUE (conversation_id, seq),
    CONSTRAINT messages_client_id_unique UNIQUE (conversation_id, client_id)
);
