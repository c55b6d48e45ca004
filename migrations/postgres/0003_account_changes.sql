-- Changes made to accounts outside the API (the command line): a role changed or an account
-- deleted. Every running server reads the recent ones, so it refuses access tokens that
-- carry the old role and drops the user's sockets. Same meaning as the SQLite migration of
-- the same name.
CREATE TABLE account_changes (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- No foreign key: the change outlives a deleted account.
    user_id    UUID NOT NULL,
    -- The role after the change; NULL when the account was deleted.
    role       TEXT CHECK (role IN ('student', 'instructor', 'admin')),
    changed_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX account_changes_changed_idx ON account_changes (changed_at);
