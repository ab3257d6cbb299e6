-- Dataset jobs (documents in, fine-tuning files out) and their events.
-- Kept in step with ../postgres/0005_datasets.sql: same tables, columns and indexes.
CREATE TABLE dataset_jobs (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    collection_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    counts TEXT,
    result_files TEXT NOT NULL DEFAULT '[]',
    rejected_file TEXT,
    created_at BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL,
    requested TEXT,
    lease_owner TEXT,
    lease_expires_at BIGINT
);
CREATE INDEX dataset_jobs_organization ON dataset_jobs(organization_id, created_ms, id);
CREATE INDEX dataset_jobs_queue ON dataset_jobs(status, lease_expires_at, created_ms);

CREATE TABLE dataset_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL REFERENCES dataset_jobs(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT
);
CREATE INDEX dataset_events_job ON dataset_events(job_id, seq);
