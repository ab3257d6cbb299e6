-- Conversations of RAG chat (/v1/conversations) and their turns.
-- Kept in step with ../postgres/0004_conversations.sql: same tables, columns and indexes.
CREATE TABLE conversations (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    collection_id TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conversations_organization ON conversations(organization_id, updated_at, id);

-- One question and its answer; seq counts from 1 within the conversation. sources: the
-- retrieved chunks as the chat answer listed them (JSON).
CREATE TABLE conversation_turns (
    id TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    sources TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (conversation_id, seq)
);
