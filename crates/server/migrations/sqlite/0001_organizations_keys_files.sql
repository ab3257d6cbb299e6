-- Organizations, their API keys (sha256 hashes only) and their uploaded files.
-- Kept in step with ../postgres/0001_organizations_keys_files.sql: same tables, columns and
-- indexes; timestamps are unix seconds.
CREATE TABLE organizations (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    allow_remote BIGINT NOT NULL DEFAULT 0 CHECK (allow_remote IN (0, 1))
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_organization ON api_keys(organization_id, created_at);

CREATE TABLE files (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    status TEXT NOT NULL,
    format TEXT,
    examples BIGINT
);
CREATE INDEX files_organization ON files(organization_id, created_at, id);
