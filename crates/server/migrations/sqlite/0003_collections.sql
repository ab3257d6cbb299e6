-- Document collections and their documents.
-- Kept in step with ../postgres/0003_collections.sql: same tables, columns and indexes.
CREATE TABLE collections (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    metadata TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (organization_id, name)
);
CREATE INDEX collections_organization ON collections(organization_id, created_at, id);

-- status: queued, ingesting, indexed, failed (error says why). content_hash (sha256 of the
-- bytes) makes a re-upload of an unchanged file return the document it already is.
CREATE TABLE documents (
    id TEXT PRIMARY KEY NOT NULL,
    collection_id TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    filename TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    media_type TEXT NOT NULL,
    metadata TEXT,
    status TEXT NOT NULL,
    error TEXT,
    pages BIGINT,
    chunks BIGINT,
    doc_key TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    UNIQUE (collection_id, content_hash)
);
CREATE INDEX documents_collection ON documents(collection_id, created_at, id);
CREATE INDEX documents_queue ON documents(status, lease_expires_at, created_at);
