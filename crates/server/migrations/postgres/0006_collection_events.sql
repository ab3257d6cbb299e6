-- Progress events of a collection's documents (queued, ingesting, indexed, failed, deleted).
-- Kept in step with ../sqlite/0006_collection_events.sql: same table, columns and index.
CREATE TABLE collection_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    collection_id TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    document_id TEXT,
    created_at BIGINT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT
);
CREATE INDEX collection_events_collection ON collection_events(collection_id, seq);
