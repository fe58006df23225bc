-- wasmhook's storage in PostgreSQL: the same records as the sled backend,
-- one table per sled tree. Every table lives in the schema named by
-- `storage.schema`, which is each connection's search_path, so no
-- statement here or in the code names it.

-- Pending deliveries. `record` is the Delivery as `store::record` encodes
-- it (JSON, LZ4-packed above 8 KiB); the other columns are what queries
-- select on. `held` is the truth for a held delivery (the record's copy is
-- what it was when last written). A node owns the rows it wrote, released,
-- rescheduled or adopted, for as long as it renews `lease_until`; rows
-- whose lease has run out are adopted by any node.
CREATE TABLE outbox (
    key          bigserial PRIMARY KEY,
    due_ms       bigint      NOT NULL,
    observer     text        NOT NULL,
    webhook      bigint      NOT NULL,
    event_id     text        NOT NULL,
    delivery_id  text        NOT NULL,
    held         boolean     NOT NULL,
    after_key    bigint,
    attempted    boolean     NOT NULL,
    owner        text,
    lease_until  timestamptz NOT NULL,
    record       bytea       NOT NULL
);
CREATE INDEX outbox_lease ON outbox (lease_until, due_ms);
CREATE INDEX outbox_owner ON outbox (owner);

-- Dead letters, one row each. Ids are v7 UUIDs: in "C" order they list
-- oldest first, as sled's keys do. `observer` is NULL for rejected input,
-- which is not `retryable`.
CREATE TABLE dlq (
    id            text COLLATE "C" PRIMARY KEY,
    failed_at_ms  bigint  NOT NULL,
    observer      text,
    retryable     boolean NOT NULL,
    record        bytea   NOT NULL
);
CREATE INDEX dlq_failed_at ON dlq (failed_at_ms);
CREATE INDEX dlq_observer ON dlq (observer, id);

-- Where a source that reads someone else's log keeps its place.
CREATE TABLE source_cursors (
    source    text  PRIMARY KEY,
    position  bytea NOT NULL
);

-- Switched-off webhooks.
CREATE TABLE disabled_webhooks (
    observer  text   NOT NULL,
    webhook   bigint NOT NULL,
    PRIMARY KEY (observer, webhook)
);

-- Incoming delivery ids seen, until they expire (unix milliseconds).
CREATE TABLE incoming_seen (
    key         text   PRIMARY KEY,
    expires_ms  bigint NOT NULL
);
CREATE INDEX incoming_seen_expiry ON incoming_seen (expires_ms);

-- The last run each schedule handled (unix milliseconds).
CREATE TABLE schedule_marks (
    name   text   PRIMARY KEY,
    at_ms  bigint NOT NULL
);

-- The row the readiness probe writes.
CREATE TABLE health (
    probe  text        PRIMARY KEY,
    at     timestamptz NOT NULL
);
