-- The whole contract's schema. Ids are UUIDv7 (byte order = creation order).

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('student', 'instructor', 'admin')),
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE refresh_tokens (
    id          UUID PRIMARY KEY,
    family_id   UUID NOT NULL,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX refresh_tokens_hash_key ON refresh_tokens (token_hash);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

CREATE TABLE courses (
    id            UUID PRIMARY KEY,
    title         TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    instructor_id UUID NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    room_id       UUID NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX courses_room_key ON courses (room_id);
CREATE INDEX courses_instructor_idx ON courses (instructor_id, id);

CREATE TABLE enrollments (
    id         UUID PRIMARY KEY,
    course_id  UUID NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX enrollments_course_user_key ON enrollments (course_id, user_id);
CREATE INDEX enrollments_user_idx ON enrollments (user_id, course_id);

CREATE TABLE live_sessions (
    id               UUID PRIMARY KEY,
    course_id        UUID NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    title            TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('scheduled', 'live', 'ended')),
    scheduled_at     TIMESTAMPTZ,
    started_at       TIMESTAMPTZ,
    ended_at         TIMESTAMPTZ,
    max_participants BIGINT CHECK (max_participants IS NULL OR max_participants > 0),
    room_id          UUID NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX live_sessions_room_key ON live_sessions (room_id);
CREATE INDEX live_sessions_course_idx ON live_sessions (course_id, id);

CREATE TABLE session_participants (
    id         UUID PRIMARY KEY,
    session_id UUID NOT NULL REFERENCES live_sessions (id) ON DELETE CASCADE,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    socket_id  TEXT NOT NULL,
    joined_at  TIMESTAMPTZ NOT NULL,
    left_at    TIMESTAMPTZ
);
CREATE INDEX session_participants_session_idx ON session_participants (session_id, id);
CREATE INDEX session_participants_open_idx ON session_participants (session_id) WHERE left_at IS NULL;

CREATE TABLE files (
    id            UUID PRIMARY KEY,
    owner_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    course_id     UUID REFERENCES courses (id) ON DELETE SET NULL,
    folder        TEXT NOT NULL CHECK (folder IN ('documents', 'images', 'videos', 'misc')),
    filename      TEXT NOT NULL,
    original_name TEXT NOT NULL,
    size          BIGINT NOT NULL CHECK (size >= 0),
    mimetype      TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX files_folder_filename_key ON files (folder, filename);
CREATE INDEX files_owner_idx ON files (owner_id, id);
CREATE INDEX files_course_idx ON files (course_id);

CREATE TABLE chat_messages (
    id         UUID PRIMARY KEY,
    room_id    UUID NOT NULL,
    sender_id  UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content    TEXT NOT NULL,
    client_id  TEXT,
    reply_to   UUID,
    flagged    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL,
    edited_at  TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    -- 'simple' keeps the index language-neutral; tombstones index nothing.
    search     TSVECTOR GENERATED ALWAYS AS (
        CASE WHEN deleted_at IS NULL THEN to_tsvector('simple', content) ELSE ''::tsvector END
    ) STORED
);
CREATE UNIQUE INDEX chat_messages_sender_client_key ON chat_messages (sender_id, client_id) WHERE client_id IS NOT NULL;
CREATE INDEX chat_messages_room_idx ON chat_messages (room_id, id);
CREATE INDEX chat_messages_search_idx ON chat_messages USING GIN (search);

-- Attachments keep the file id without a foreign key: deleting a file leaves the message
-- showing the attachment as deleted.
CREATE TABLE message_attachments (
    message_id UUID NOT NULL REFERENCES chat_messages (id) ON DELETE CASCADE,
    file_id    UUID NOT NULL,
    position   INTEGER NOT NULL,
    PRIMARY KEY (message_id, position)
);
CREATE INDEX message_attachments_file_idx ON message_attachments (file_id);
