-- Policy plugins: uploaded modules, every revision of each slot's chain, and the decision audit.
-- Same meaning as the SQLite migration of the same name.

-- Content-addressed: the key is the lowercase hex SHA-256 of the bytes, which live on disk.
CREATE TABLE plugin_modules (
    sha256      TEXT PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    name        TEXT NOT NULL,
    abi         TEXT NOT NULL CHECK (abi IN ('component', 'extism')),
    world       TEXT NOT NULL,
    wit_version TEXT NOT NULL,
    size        BIGINT NOT NULL CHECK (size >= 0),
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX plugin_modules_created_idx ON plugin_modules (created_at);

-- Revisions are numbered 1, 2, 3… per slot and never change or go away: a rollback is a new
-- revision whose chain is an older one's. `activated_by` keeps the user id without a foreign
-- key, so the history still says who did it if that account is ever removed; it is NULL for
-- revisions read from plugins.toml.
CREATE TABLE plugin_revisions (
    slot          TEXT NOT NULL CHECK (slot IN ('chat', 'files', 'signaling')),
    revision      BIGINT NOT NULL CHECK (revision > 0),
    activated_at  TIMESTAMPTZ NOT NULL,
    activated_by  UUID,
    source        TEXT NOT NULL CHECK (source IN ('api', 'file', 'rollback', 'promote')),
    failure       TEXT NOT NULL CHECK (failure IN ('fail-closed', 'fail-open')),
    -- The links exactly as the API received them (key order kept), so text rather than JSONB.
    chain         TEXT NOT NULL CHECK (json_typeof(chain::json) = 'array'),
    restored_from BIGINT,
    PRIMARY KEY (slot, revision),
    CHECK (restored_from < revision),
    FOREIGN KEY (slot, restored_from) REFERENCES plugin_revisions (slot, revision)
);
CREATE INDEX plugin_revisions_source_idx ON plugin_revisions (slot, source, revision);

-- The decision audit: who, where and what verdict, never the content (only its hash). Ids
-- and context are the plugins' view of them, which is text.
CREATE TABLE plugin_decisions (
    id             UUID PRIMARY KEY,
    at             TIMESTAMPTZ NOT NULL,
    slot           TEXT NOT NULL,
    plugin_name    TEXT NOT NULL,
    plugin_sha256  TEXT NOT NULL,
    verdict        TEXT NOT NULL,
    reason         TEXT,
    shadow         BOOLEAN NOT NULL DEFAULT FALSE,
    actor_id       TEXT,
    course_id      TEXT,
    room_id        TEXT,
    session_id     TEXT,
    subject_id     TEXT,
    request_id     TEXT NOT NULL,
    content_sha256 TEXT
);
-- The list is newest first by id, under any mix of filters: each selective filter has an
-- index in that order. `at` serves the time window and pruning.
CREATE INDEX plugin_decisions_slot_idx ON plugin_decisions (slot, id);
CREATE INDEX plugin_decisions_verdict_idx ON plugin_decisions (verdict, id);
CREATE INDEX plugin_decisions_plugin_idx ON plugin_decisions (plugin_sha256, id);
CREATE INDEX plugin_decisions_shadow_idx ON plugin_decisions (shadow, id);
CREATE INDEX plugin_decisions_at_idx ON plugin_decisions (at);
