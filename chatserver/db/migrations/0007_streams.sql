-- Streamed messages: one message that grows delta by delta (see chatserver/services/streams.py).
-- stream_state is NULL for a message posted whole; else open, complete or aborted.
-- stream_ends holds character offsets into content: element 0 is the length of the opening
-- content and element i + 1 the end of delta i, so delta i is content[ends[i]:ends[i + 1]] and a
-- resume reads "the text so far" and any later delta by index from this one row. Each group
-- commit appends to content and stream_ends with one UPDATE per stream (never a row per delta).
ALTER TABLE messages
    ADD COLUMN stream_state text,
    ADD COLUMN stream_next_index integer,
    ADD COLUMN stream_ends integer[],
    ADD COLUMN stream_reason text,
    ADD COLUMN stream_touched_at timestamptz;

-- A conversation's open streams (a room opening, the per-conversation limit).
CREATE INDEX messages_open_streams ON messages (conversation_id) WHERE stream_state = 'open';
-- The idle sweep: open streams by their last append.
CREATE INDEX messages_idle_streams ON messages (stream_touched_at) WHERE stream_state = 'open';
