-- The whole contract's schema. Ids are UUIDv7 as 16-byte blobs (byte order = creation order);
-- times are RFC 3339 text in UTC.

CREATE TABLE users (
    id            BLOB PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('student', 'instructor', 'admin')),
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE refresh_tokens (
    id          BLOB PRIMARY KEY NOT NULL,
    family_id   BLOB NOT NULL,
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT,
    revoked_at  TEXT
);
CREATE UNIQUE INDEX refresh_tokens_hash_key ON refresh_tokens (token_hash);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

CREATE TABLE courses (
    id            BLOB PRIMARY KEY NOT NULL,
    title         TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    instructor_id BLOB NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    room_id       BLOB NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX courses_room_key ON courses (room_id);
CREATE INDEX courses_instructor_idx ON courses (instructor_id, id);

CREATE TABLE enrollments (
    id         BLOB PRIMARY KEY NOT NULL,
    course_id  BLOB NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX enrollments_course_user_key ON enrollments (course_id, user_id);
CREATE INDEX enrollments_user_idx ON enrollments (user_id, course_id);

CREATE TABLE live_sessions (
    id               BLOB PRIMARY KEY NOT NULL,
    course_id        BLOB NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    title            TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('scheduled', 'live', 'ended')),
    scheduled_at     TEXT,
    started_at       TEXT,
    ended_at         TEXT,
    max_participants INTEGER CHECK (max_participants IS NULL OR max_participants > 0),
    room_id          BLOB NOT NULL,
    created_at       TEXT NOT NULL
);
CREATE UNIQUE INDEX live_sessions_room_key ON live_sessions (room_id);
CREATE INDEX live_sessions_course_idx ON live_sessions (course_id, id);

CREATE TABLE session_participants (
    id         BLOB PRIMARY KEY NOT NULL,
    session_id BLOB NOT NULL REFERENCES live_sessions (id) ON DELETE CASCADE,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    socket_id  TEXT NOT NULL,
    joined_at  TEXT NOT NULL,
    left_at    TEXT
);
CREATE INDEX session_participants_session_idx ON session_participants (session_id, id);
CREATE INDEX session_participants_open_idx ON session_participants (session_id) WHERE left_at IS NULL;

CREATE TABLE files (
    id            BLOB PRIMARY KEY NOT NULL,
    owner_id      BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    course_id     BLOB REFERENCES courses (id) ON DELETE SET NULL,
    folder        TEXT NOT NULL CHECK (folder IN ('documents', 'images', 'videos', 'misc')),
    filename      TEXT NOT NULL,
    original_name TEXT NOT NULL,
    size          INTEGER NOT NULL CHECK (size >= 0),
    mimetype      TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX files_folder_filename_key ON files (folder, filename);
CREATE INDEX files_owner_idx ON files (owner_id, id);
CREATE INDEX files_course_idx ON files (course_id);

CREATE TABLE chat_messages (
    -- An integer rowid alias is what FTS5's external-content tables index by.
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         BLOB NOT NULL,
    room_id    BLOB NOT NULL,
    sender_id  BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content    TEXT NOT NULL,
    client_id  TEXT,
    reply_to   BLOB,
    flagged    INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    edited_at  TEXT,
    deleted_at TEXT
);
CREATE UNIQUE INDEX chat_messages_id_key ON chat_messages (id);
CREATE UNIQUE INDEX chat_messages_sender_client_key ON chat_messages (sender_id, client_id) WHERE client_id IS NOT NULL;
CREATE INDEX chat_messages_room_idx ON chat_messages (room_id, id);

-- Attachments keep the file id without a foreign key: deleting a file leaves the message
-- showing the attachment as deleted.
CREATE TABLE message_attachments (
    message_id BLOB NOT NULL REFERENCES chat_messages (id) ON DELETE CASCADE,
    file_id    BLOB NOT NULL,
    position   INTEGER NOT NULL,
    PRIMARY KEY (message_id, position)
);
CREATE INDEX message_attachments_file_idx ON message_attachments (file_id);

CREATE VIRTUAL TABLE chat_messages_fts USING fts5(
    content,
    content = 'chat_messages',
    content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2'
);

-- Deleted messages are tombstones with empty content and leave the index.
CREATE TRIGGER chat_messages_fts_insert AFTER INSERT ON chat_messages
WHEN new.deleted_at IS NULL BEGIN
    INSERT INTO chat_messages_fts (rowid, content) VALUES (new.seq, new.content);
END;
CREATE TRIGGER chat_messages_fts_update AFTER UPDATE OF content, deleted_at ON chat_messages BEGIN
    INSERT INTO chat_messages_fts (chat_messages_fts, rowid, content)
        SELECT 'delete', old.seq, old.content WHERE old.deleted_at IS NULL;
    INSERT INTO chat_messages_fts (rowid, content)
        SELECT new.seq, new.content WHERE new.deleted_at IS NULL;
END;
CREATE TRIGGER chat_messages_fts_delete AFTER DELETE ON chat_messages
WHEN old.deleted_at IS NULL BEGIN
    INSERT INTO chat_messages_fts (chat_messages_fts, rowid, content) VALUES ('delete', old.seq, old.content);
END;
