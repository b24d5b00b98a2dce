-- Realtime: secrets shared by every instance (the HS256 key that signs browser tokens).

CREATE TABLE signing_secrets (
    name text PRIMARY KEY,
    secret bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
