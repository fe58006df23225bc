-- Finished deliveries (delivered or dead), one row each, for
-- `[delivery_log] retention`. `record` is the log entry as
-- `store::record` encodes it. Ids are v7 UUIDs, so in "C" order they list
-- events as they were accepted; a time range is a range of ids.
CREATE TABLE delivery_log (
    id        text COLLATE "C" PRIMARY KEY,
    event_id  text   NOT NULL,
    observer  text   NOT NULL,
    status    text   NOT NULL,
    record    bytea  NOT NULL
);
CREATE INDEX delivery_log_event ON delivery_log (event_id);
CREATE INDEX delivery_log_observer ON delivery_log (observer, id);

-- A pending delivery found by its id (`deliveries show`, a listing's page).
CREATE INDEX outbox_delivery ON outbox (delivery_id COLLATE "C");
