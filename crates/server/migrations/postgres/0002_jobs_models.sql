-- Fine-tuning jobs, their events and checkpoints, and the models of the hub.
-- Kept in step with ../sqlite/0002_jobs_models.sql: same tables, columns and indexes;
-- timestamps are unix seconds, JSON is stored as TEXT.

-- Base models added with `docraft admin model add` (organization_id NULL: every organization
-- sees them) and the fine-tuned models of each organization.
CREATE TABLE models (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT REFERENCES organizations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('base', 'fine-tuned')),
    origin TEXT NOT NULL CHECK (origin IN ('local', 'remote')),
    path TEXT NOT NULL,
    base_model TEXT,
    job_id TEXT,
    training_file TEXT,
    parameters TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX models_organization ON models(organization_id, created_at, id);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    training_file TEXT NOT NULL,
    validation_file TEXT,
    settings TEXT NOT NULL,
    hyperparameters TEXT NOT NULL,
    suffix TEXT,
    output_name TEXT NOT NULL,
    seed BIGINT NOT NULL,
    metadata TEXT,
    status TEXT NOT NULL,
    error TEXT,
    fine_tuned_model TEXT,
    result_files TEXT NOT NULL DEFAULT '[]',
    trained_tokens BIGINT,
    total_steps BIGINT,
    created_at BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    estimated_finish BIGINT,
    requested TEXT,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    event_lines BIGINT NOT NULL DEFAULT 0,
    cpu_seconds BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
-- created_ms orders jobs made within one second (created_at is OpenAI's unix seconds).
CREATE INDEX jobs_organization ON jobs(organization_id, created_ms, id);
CREATE INDEX jobs_queue ON jobs(status, lease_expires_at, created_ms);

-- seq orders the events of every job; dedup makes each write idempotent (a step's metrics,
-- a line of the trainer's events.jsonl), so a resumed run never duplicates a row.
CREATE TABLE job_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    dedup TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    level TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT,
    step BIGINT,
    UNIQUE (job_id, dedup)
);
CREATE INDEX job_events_job ON job_events(job_id, seq);

CREATE TABLE job_checkpoints (
    id TEXT PRIMARY KEY NOT NULL,
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    step BIGINT NOT NULL,
    metrics TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (job_id, step)
);
