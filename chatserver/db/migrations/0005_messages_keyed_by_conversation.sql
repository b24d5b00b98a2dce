-- Messages keyed by conversation first: the primary key becomes (conversation_id, id), so every
-- index of messages leads with conversation_id (the other two already did) and the table can be
-- hash-partitioned by conversation ([database] partitions, or a distributed Postgres such as
-- Citus) without changing a query: Postgres requires the partition key in every unique index.
-- No table references messages by id (webhook payloads carry copies of the message), and every
-- query that names a message's id names its conversation too.
--
-- On a populated table this builds the new index in one pass, in the migration's transaction:
-- writers to messages wait meanwhile (about 2 s per million rows on a 2-core machine).
ALTER TABLE messages
    DROP CONSTRAINT messages_pkey,
    ADD CONSTRAINT messages_pkey PRIMARY KEY (conversation_id, id);
