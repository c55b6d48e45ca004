//! The SQL both backends share. SQLite accepts PostgreSQL's `$n` placeholders and both
//! understand `RETURNING`, so one text serves both; the macro stamps it out per pool type,
//! which keeps the statements in one place without generic bounds over `sqlx::Database`.

/// The columns of a message with its sender's name (`m` is `chat_messages`, `u` is `users`).
macro_rules! message_select {
    () => {
        "SELECT m.id, m.room_id, m.sender_id, u.name AS sender_name, m.content, m.client_id,
                m.reply_to, m.flagged, m.created_at, m.edited_at, m.deleted_at
         FROM chat_messages m JOIN users u ON u.id = m.sender_id "
    };
}

/// Rooms user `$3` may read: the course rooms and session rooms of courses they teach or
/// are enrolled in.
macro_rules! readable_rooms {
    () => {
        "SELECT c.room_id FROM courses c
         WHERE c.instructor_id = $3 OR c.id IN (SELECT course_id FROM enrollments WHERE user_id = $3)
         UNION ALL
         SELECT s.room_id FROM live_sessions s JOIN courses c ON c.id = s.course_id
         WHERE c.instructor_id = $3 OR c.id IN (SELECT course_id FROM enrollments WHERE user_id = $3)"
    };
}

/// Tells sockets on every node that an account's role changed (`$2`) or that it was deleted
/// (`$2` NULL); written in the same transaction as the change.
macro_rules! record_account_change {
    () => {
        "INSERT INTO account_changes (user_id, role, changed_at) VALUES ($1, $2, $3)"
    };
}

pub(crate) use {message_select, readable_rooms, record_account_change};

macro_rules! impl_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> $crate::store::Backend {
                Self::BACKEND
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn insert_user(&self, user: &User, password_hash: &str) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO users (id, email, name, role, password_hash, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(user.id)
                .bind(&user.email)
                .bind(&user.name)
                .bind(user.role.as_str())
                .bind(password_hash)
                .bind(user.created_at)
                .execute(&self.pool)
                .await
                .map_err($crate::store::conflict("email is already registered"))?;
                Ok(())
            }

            async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
                let row: Option<UserRow> = sqlx::query_as("SELECT * FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| UserCredentials::try_from(r).map(|c| c.user)).transpose()
            }

            async fn credentials_by_email(&self, email: &str) -> StoreResult<Option<UserCredentials>> {
                let row: Option<UserRow> = sqlx::query_as("SELECT * FROM users WHERE email = $1")
                    .bind(email)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(UserCredentials::try_from).transpose()
            }

            async fn change_role(&self, user: UserId, role: Role, at: DateTime<Utc>) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let changed = sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
                    .bind(user)
                    .bind(role.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if changed == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                sqlx::query($crate::store::sql::record_account_change!())
                    .bind(user)
                    .bind(Some(role.as_str()))
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn delete_user(&self, user: UserId, at: DateTime<Utc>) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let (teaches,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM courses WHERE instructor_id = $1")
                        .bind(user)
                        .fetch_one(&mut *tx)
                        .await?;
                if teaches > 0 {
                    tx.rollback().await?;
                    return Err(StoreError::Conflict(format!(
                        "the user teaches {teaches} course(s); delete them or give them to another instructor first"
                    )));
                }
                let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(user)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                // No role: the account is gone.
                sqlx::query($crate::store::sql::record_account_change!())
                    .bind(user)
                    .bind(None::<&str>)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn account_changes(
                &self,
                since: DateTime<Utc>,
                limit: u32,
            ) -> StoreResult<Vec<$crate::store::AccountChange>> {
                let rows: Vec<AccountChangeRow> = sqlx::query_as(
                    "SELECT seq, user_id, role, changed_at FROM account_changes
                     WHERE changed_at > $1 ORDER BY seq LIMIT $2",
                )
                .bind(since)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(TryFrom::try_from).collect()
            }

            async fn prune_account_changes(&self, before: DateTime<Utc>) -> StoreResult<u64> {
                let pruned = sqlx::query("DELETE FROM account_changes WHERE changed_at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(pruned)
            }

            async fn insert_refresh_token(&self, token: &NewRefreshToken) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(token.id)
                .bind(token.family_id)
                .bind(token.user_id)
                .bind(&token.token_hash)
                .bind(token.created_at)
                .bind(token.expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn refresh_token_by_hash(&self, hash: &[u8]) -> StoreResult<Option<RefreshToken>> {
                let row: Option<RefreshTokenRow> = sqlx::query_as(
                    "SELECT id, family_id, user_id, expires_at, used_at, revoked_at
                     FROM refresh_tokens WHERE token_hash = $1",
                )
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(RefreshToken::from))
            }

            async fn rotate_refresh_token(&self, old: Uuid, new: &NewRefreshToken) -> StoreResult<Rotation> {
                // The conditional UPDATE comes first: it takes SQLite's write lock at once (no
                // read-then-upgrade deadlock) and lets exactly one of two racing refreshes win.
                let mut tx = self.begin_write().await?;
                let claimed = sqlx::query(
                    "UPDATE refresh_tokens SET used_at = $2
                     WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL",
                )
                .bind(old)
                .bind(new.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if claimed != 1 {
                    tx.rollback().await?;
                    return Ok(Rotation::AlreadyUsed);
                }
                sqlx::query(
                    "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(new.id)
                .bind(new.family_id)
                .bind(new.user_id)
                .bind(&new.token_hash)
                .bind(new.created_at)
                .bind(new.expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Rotation::Rotated)
            }

            async fn revoke_token_family(&self, family: TokenFamilyId) -> StoreResult<u64> {
                let revoked = sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $2
                     WHERE family_id = $1 AND revoked_at IS NULL",
                )
                .bind(family)
                .bind($crate::domain::now())
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(revoked)
            }

            async fn insert_course(&self, course: &Course) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO courses (id, title, description, instructor_id, room_id, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(course.id)
                .bind(&course.title)
                .bind(&course.description)
                .bind(course.instructor_id)
                .bind(course.room_id)
                .bind(course.created_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn course(&self, id: CourseId) -> StoreResult<Option<Course>> {
                let row: Option<CourseRow> = sqlx::query_as("SELECT * FROM courses WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(Course::from))
            }

            async fn list_courses(
                &self,
                member: Option<UserId>,
                after: After<CourseId>,
                limit: u32,
            ) -> StoreResult<Vec<Course>> {
                let rows: Vec<CourseRow> = match member {
                    None => sqlx::query_as(
                        "SELECT * FROM courses
                         WHERE ($1 IS NULL OR id < $1)
                         ORDER BY id DESC LIMIT $2",
                    )
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?,
                    Some(user) => sqlx::query_as(
                        "SELECT * FROM courses
                         WHERE ($1 IS NULL OR id < $1)
                           AND (instructor_id = $3
                                OR id IN (SELECT course_id FROM enrollments WHERE user_id = $3))
                         ORDER BY id DESC LIMIT $2",
                    )
                    .bind(after)
                    .bind(i64::from(limit))
                    .bind(user)
                    .fetch_all(&self.pool)
                    .await?,
                };
                Ok(rows.into_iter().map(Course::from).collect())
            }

            async fn update_course(
                &self,
                id: CourseId,
                title: &str,
                description: &str,
            ) -> StoreResult<Option<Course>> {
                let row: Option<CourseRow> = sqlx::query_as(
                    "UPDATE courses SET title = $2, description = $3 WHERE id = $1 RETURNING *",
                )
                .bind(id)
                .bind(title)
                .bind(description)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Course::from))
            }

            async fn delete_course(&self, id: CourseId) -> StoreResult<bool> {
                let deleted = sqlx::query("DELETE FROM courses WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(deleted == 1)
            }

            async fn insert_enrollment(&self, enrollment: &Enrollment) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO enrollments (id, course_id, user_id, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(Uuid::now_v7())
                .bind(enrollment.course_id)
                .bind(enrollment.user_id)
                .bind(enrollment.created_at)
                .execute(&self.pool)
                .await
                .map_err($crate::store::conflict("already enrolled"))?;
                Ok(())
            }

            async fn is_enrolled(&self, course: CourseId, user: UserId) -> StoreResult<bool> {
                let found: Option<(i32,)> = sqlx::query_as(
                    "SELECT 1 FROM enrollments WHERE course_id = $1 AND user_id = $2",
                )
                .bind(course)
                .bind(user)
                .fetch_optional(&self.pool)
                .await?;
                Ok(found.is_some())
            }

            async fn list_enrollments(
                &self,
                course: CourseId,
                after: After<Uuid>,
                limit: u32,
            ) -> StoreResult<Vec<(Uuid, Enrollment)>> {
                let rows: Vec<EnrollmentRow> = sqlx::query_as(
                    "SELECT * FROM enrollments
                     WHERE course_id = $1 AND ($2 IS NULL OR id > $2)
                     ORDER BY id LIMIT $3",
                )
                .bind(course)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn delete_enrollment(&self, course: CourseId, user: UserId) -> StoreResult<bool> {
                let deleted = sqlx::query("DELETE FROM enrollments WHERE course_id = $1 AND user_id = $2")
                    .bind(course)
                    .bind(user)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(deleted == 1)
            }

            async fn insert_session(&self, session: &LiveSession) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO live_sessions
                       (id, course_id, title, status, scheduled_at, started_at, ended_at,
                        max_participants, room_id, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(session.id)
                .bind(session.course_id)
                .bind(&session.title)
                .bind(session.status.as_str())
                .bind(session.scheduled_at)
                .bind(session.started_at)
                .bind(session.ended_at)
                .bind(session.max_participants.map(i64::from))
                .bind(session.room_id)
                .bind($crate::domain::now())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn session(&self, id: SessionId) -> StoreResult<Option<LiveSession>> {
                let row: Option<SessionRow> = sqlx::query_as("SELECT * FROM live_sessions WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(LiveSession::try_from).transpose()
            }

            async fn list_sessions(
                &self,
                course: CourseId,
                after: After<SessionId>,
                limit: u32,
            ) -> StoreResult<Vec<LiveSession>> {
                let rows: Vec<SessionRow> = sqlx::query_as(
                    "SELECT * FROM live_sessions
                     WHERE course_id = $1 AND ($2 IS NULL OR id < $2)
                     ORDER BY id DESC LIMIT $3",
                )
                .bind(course)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(LiveSession::try_from).collect()
            }

            async fn start_session(&self, id: SessionId, at: DateTime<Utc>) -> StoreResult<Option<LiveSession>> {
                let row: Option<SessionRow> = sqlx::query_as(
                    "UPDATE live_sessions SET status = 'live', started_at = $2
                     WHERE id = $1 AND status = 'scheduled' RETURNING *",
                )
                .bind(id)
                .bind(at)
                .fetch_optional(&self.pool)
                .await?;
                row.map(LiveSession::try_from).transpose()
            }

            async fn end_session(&self, id: SessionId, at: DateTime<Utc>) -> StoreResult<Option<LiveSession>> {
                let mut tx = self.begin_write().await?;
                let row: Option<SessionRow> = sqlx::query_as(
                    "UPDATE live_sessions SET status = 'ended', ended_at = $2
                     WHERE id = $1 AND status <> 'ended' RETURNING *",
                )
                .bind(id)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
                if row.is_some() {
                    sqlx::query(
                        "UPDATE session_participants SET left_at = $2
                         WHERE session_id = $1 AND left_at IS NULL",
                    )
                    .bind(id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                row.map(LiveSession::try_from).transpose()
            }

            async fn insert_participant(
                &self,
                id: Uuid,
                session: SessionId,
                user: UserId,
                socket_id: &str,
                at: DateTime<Utc>,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO session_participants (id, session_id, user_id, socket_id, joined_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id)
                .bind(session)
                .bind(user)
                .bind(socket_id)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn close_participant(&self, session: SessionId, socket_id: &str, at: DateTime<Utc>) -> StoreResult<bool> {
                let closed = sqlx::query(
                    "UPDATE session_participants SET left_at = $3
                     WHERE session_id = $1 AND socket_id = $2 AND left_at IS NULL",
                )
                .bind(session)
                .bind(socket_id)
                .bind(at)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(closed > 0)
            }

            async fn count_open_participants(&self, session: SessionId) -> StoreResult<u32> {
                let (count,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM session_participants WHERE session_id = $1 AND left_at IS NULL",
                )
                .bind(session)
                .fetch_one(&self.pool)
                .await?;
                Ok(count.clamp(0, u32::MAX as i64) as u32)
            }

            async fn list_participants(
                &self,
                session: SessionId,
                after: After<Uuid>,
                limit: u32,
            ) -> StoreResult<Vec<(Uuid, Participant)>> {
                let rows: Vec<ParticipantRow> = sqlx::query_as(
                    "SELECT p.id, p.user_id, u.name, p.joined_at, p.left_at
                     FROM session_participants p JOIN users u ON u.id = p.user_id
                     WHERE p.session_id = $1 AND ($2 IS NULL OR p.id > $2)
                     ORDER BY p.id LIMIT $3",
                )
                .bind(session)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn room_owner(&self, room: RoomId) -> StoreResult<Option<RoomOwner>> {
                let course: Option<(CourseId,)> = sqlx::query_as("SELECT id FROM courses WHERE room_id = $1")
                    .bind(room)
                    .fetch_optional(&self.pool)
                    .await?;
                if let Some((course,)) = course {
                    return Ok(Some(RoomOwner::Course(course)));
                }
                let session: Option<(SessionId, CourseId)> =
                    sqlx::query_as("SELECT id, course_id FROM live_sessions WHERE room_id = $1")
                        .bind(room)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(session.map(|(session, course)| RoomOwner::Session { session, course }))
            }

            async fn insert_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<Inserted>> {
                if batch.is_empty() {
                    return Ok(Vec::new());
                }
                let mut tx = self.begin_write().await?;
                let mut created = std::collections::HashSet::with_capacity(batch.len());
                for chunk in batch.chunks($crate::store::MESSAGE_ROWS_PER_STATEMENT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO chat_messages
                           (id, room_id, sender_id, content, client_id, reply_to, flagged, created_at) ",
                    );
                    insert.push_values(chunk, |mut row, m| {
                        row.push_bind(m.id)
                            .push_bind(m.room_id)
                            .push_bind(m.sender_id)
                            .push_bind(&m.content)
                            .push_bind(&m.client_id)
                            .push_bind(m.reply_to)
                            .push_bind(m.flagged)
                            .push_bind(m.created_at);
                    });
                    // Rows whose (sender, clientId) is taken are skipped, not errors: that is
                    // how a resend finds its first message without a look-up beforehand.
                    insert.push(
                        " ON CONFLICT (sender_id, client_id) WHERE client_id IS NOT NULL DO NOTHING
                         RETURNING id",
                    );
                    // Every batch size is its own statement text: kept prepared, the sizes
                    // up to 256 would fill each connection's statement cache with large
                    // programs (memory grew by ~2 MiB/s under load). Single rows, the common
                    // case at light load, stay prepared.
                    let ids: Vec<(MessageId,)> = insert
                        .build_query_as()
                        .persistent(chunk.len() == 1)
                        .fetch_all(&mut *tx)
                        .await?;
                    created.extend(ids.into_iter().map(|(id,)| id));
                }
                let mut outcomes = Vec::with_capacity(batch.len());
                for m in batch {
                    if created.contains(&m.id) {
                        outcomes.push(Inserted::Created);
                        continue;
                    }
                    // Only resends get here, so this look-up is off the common path.
                    let (existing,): (MessageId,) = sqlx::query_as(
                        "SELECT id FROM chat_messages WHERE sender_id = $1 AND client_id = $2",
                    )
                    .bind(m.sender_id)
                    .bind(&m.client_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    outcomes.push(Inserted::Existing(existing));
                }
                let attachments: Vec<(MessageId, FileId, i32)> = batch
                    .iter()
                    .filter(|m| created.contains(&m.id))
                    .flat_map(|m| {
                        m.attachments
                            .iter()
                            .enumerate()
                            .map(|(position, file)| (m.id, *file, position as i32))
                    })
                    .collect();
                for chunk in attachments.chunks($crate::store::MESSAGE_ROWS_PER_STATEMENT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO message_attachments (message_id, file_id, position) ",
                    );
                    insert.push_values(chunk, |mut row, (message, file, position)| {
                        row.push_bind(*message).push_bind(*file).push_bind(*position);
                    });
                    insert.build().persistent(chunk.len() == 1).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(outcomes)
            }

            async fn message(&self, id: MessageId) -> StoreResult<Option<Message>> {
                let row: Option<Message> =
                    sqlx::query_as(concat!($crate::store::sql::message_select!(), "WHERE m.id = $1"))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row)
            }

            async fn message_by_client_id(&self, sender: UserId, client_id: &str) -> StoreResult<Option<Message>> {
                let row: Option<Message> = sqlx::query_as(concat!(
                    $crate::store::sql::message_select!(),
                    "WHERE m.sender_id = $1 AND m.client_id = $2"
                ))
                .bind(sender)
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row)
            }

            async fn messages(
                &self,
                room: RoomId,
                before: After<MessageId>,
                limit: u32,
            ) -> StoreResult<Vec<Message>> {
                let rows: Vec<Message> = sqlx::query_as(concat!(
                    $crate::store::sql::message_select!(),
                    "WHERE m.room_id = $1 AND ($2 IS NULL OR m.id < $2) ORDER BY m.id DESC LIMIT $3"
                ))
                .bind(room)
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }

            async fn attachments(&self, messages: &[MessageId]) -> StoreResult<Vec<Attachment>> {
                if messages.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT a.message_id, a.file_id, f.id AS f_id, f.owner_id, f.course_id, f.folder,
                            f.filename, f.original_name, f.size, f.mimetype, f.sha256, f.created_at
                     FROM message_attachments a LEFT JOIN files f ON f.id = a.file_id
                     WHERE a.message_id IN (",
                );
                let mut ids = query.separated(", ");
                for id in messages {
                    ids.push_bind(*id);
                }
                ids.push_unseparated(") ORDER BY a.message_id, a.position");
                let rows: Vec<AttachmentRow> = query.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map(Attachment::try_from).collect()
            }

            async fn edit_message(
                &self,
                id: MessageId,
                content: &str,
                flagged: bool,
                at: DateTime<Utc>,
            ) -> StoreResult<Option<Message>> {
                let updated = sqlx::query(
                    "UPDATE chat_messages SET content = $2, flagged = $3, edited_at = $4
                     WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(id)
                .bind(content)
                .bind(flagged)
                .bind(at)
                .execute(&self.pool)
                .await?
                .rows_affected();
                if updated == 0 {
                    return Ok(None);
                }
                self.message(id).await
            }

            async fn delete_message(&self, id: MessageId, at: DateTime<Utc>) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let deleted = sqlx::query(
                    "UPDATE chat_messages SET content = '', deleted_at = $2
                     WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if deleted == 1 {
                    sqlx::query("DELETE FROM message_attachments WHERE message_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(deleted == 1)
            }

            async fn search_messages(&self, query: &SearchQuery) -> StoreResult<Vec<Message>> {
                if query.terms.is_empty() {
                    return Ok(Vec::new());
                }
                self.search(query).await
            }

            async fn file(&self, id: FileId) -> StoreResult<Option<FileRecord>> {
                let row: Option<FileRow> = sqlx::query_as("SELECT * FROM files WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(FileRecord::try_from).transpose()
            }

            async fn file_by_name(&self, folder: Folder, filename: &str) -> StoreResult<Option<FileRecord>> {
                let row: Option<FileRow> =
                    sqlx::query_as("SELECT * FROM files WHERE folder = $1 AND filename = $2")
                        .bind(folder.as_str())
                        .bind(filename)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(FileRecord::try_from).transpose()
            }

            async fn list_files(
                &self,
                owner: UserId,
                after: After<FileId>,
                limit: u32,
            ) -> StoreResult<Vec<FileRecord>> {
                let rows: Vec<FileRow> = sqlx::query_as(
                    "SELECT * FROM files
                     WHERE owner_id = $1 AND ($2 IS NULL OR id < $2)
                     ORDER BY id DESC LIMIT $3",
                )
                .bind(owner)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(FileRecord::try_from).collect()
            }

            async fn used_bytes(&self, owner: UserId) -> StoreResult<u64> {
                // SUM of BIGINT is NUMERIC in PostgreSQL; the cast keeps one type for both.
                let used: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM files WHERE owner_id = $1",
                )
                .bind(owner)
                .fetch_one(&self.pool)
                .await?;
                Ok(used.max(0) as u64)
            }

            async fn insert_file(
                &self,
                file: &FileRecord,
                quota: u64,
                publish: $crate::store::Publish<'_>,
            ) -> StoreResult<$crate::store::FileInsert> {
                let mut tx = self.begin_write().await?;
                // Locks the owner's row (PostgreSQL; SQLite writers are already serial) so two
                // uploads cannot both fit in the same remaining quota.
                sqlx::query("UPDATE users SET id = id WHERE id = $1")
                    .bind(file.owner_id)
                    .execute(&mut *tx)
                    .await?;
                let used: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM files WHERE owner_id = $1",
                )
                .bind(file.owner_id)
                .fetch_one(&mut *tx)
                .await?;
                let used = used.max(0) as u64;
                if used.saturating_add(file.size) > quota {
                    return Ok($crate::store::FileInsert::OverQuota { used });
                }
                sqlx::query(
                    "INSERT INTO files
                       (id, owner_id, course_id, folder, filename, original_name, size, mimetype, sha256, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(file.id)
                .bind(file.owner_id)
                .bind(file.course_id)
                .bind(file.folder.as_str())
                .bind(&file.filename)
                .bind(&file.original_name)
                .bind(i64::try_from(file.size).unwrap_or(i64::MAX))
                .bind(&file.mimetype)
                .bind(&file.sha256)
                .bind(file.created_at)
                .execute(&mut *tx)
                .await?;
                if let Err(e) = publish.await {
                    return Ok($crate::store::FileInsert::PublishFailed(e));
                }
                tx.commit().await?;
                Ok($crate::store::FileInsert::Inserted)
            }

            async fn delete_file(&self, id: FileId) -> StoreResult<Option<FileRecord>> {
                let row: Option<FileRow> =
                    sqlx::query_as("DELETE FROM files WHERE id = $1 RETURNING *")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(FileRecord::try_from).transpose()
            }

            async fn existing_files(&self, ids: &[FileId]) -> StoreResult<Vec<FileId>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT id FROM files WHERE id IN (");
                let mut list = query.separated(", ");
                for id in ids {
                    list.push_bind(*id);
                }
                list.push_unseparated(")");
                Ok(query.build_query_scalar().fetch_all(&self.pool).await?)
            }

            async fn insert_plugin_module(&self, module: &PluginModule) -> StoreResult<bool> {
                // Content-addressed: a second upload of the same bytes keeps the first record.
                let inserted = sqlx::query(
                    "INSERT INTO plugin_modules (sha256, name, abi, world, wit_version, size, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (sha256) DO NOTHING",
                )
                .bind(&module.sha256)
                .bind(&module.name)
                .bind(&module.abi)
                .bind(&module.world)
                .bind(&module.wit_version)
                .bind(i64::try_from(module.size).unwrap_or(i64::MAX))
                .bind(module.created_at)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(inserted == 1)
            }

            async fn plugin_module(&self, sha256: &str) -> StoreResult<Option<PluginModule>> {
                let row: Option<PluginModule> =
                    sqlx::query_as("SELECT * FROM plugin_modules WHERE sha256 = $1")
                        .bind(sha256)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row)
            }

            async fn plugin_modules(&self) -> StoreResult<Vec<PluginModule>> {
                let rows: Vec<PluginModule> = sqlx::query_as(
                    "SELECT * FROM plugin_modules ORDER BY created_at DESC, sha256 DESC",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }

            async fn insert_plugin_revision(
                &self,
                revision: &NewPluginRevision,
                at: DateTime<Utc>,
            ) -> StoreResult<PluginRevision> {
                let chain = serde_json::to_string(&revision.chain)
                    .map_err(|e| StoreError::Other(e.into()))?;
                // Revisions are never deleted, so one found now still exists at the insert.
                // (The foreign key alone would accept a rollback into an empty slot that names
                // the number the new revision itself is about to get.)
                if let Some(restored) = revision.restored_from
                    && self.plugin_revision(&revision.slot, restored).await?.is_none()
                {
                    return Err(StoreError::NotFound);
                }
                // The number is computed and claimed in one statement. Two writers that read the
                // same maximum collide on the primary key; PostgreSQL makes the second wait for
                // the first and then skip its row, and it tries again with a fresh maximum.
                // SQLite runs writers one at a time, so it never collides.
                for _ in 0..$crate::store::REVISION_INSERT_ATTEMPTS {
                    let row: Option<PluginRevisionRow> = sqlx::query_as(
                        "INSERT INTO plugin_revisions
                           (slot, revision, activated_at, activated_by, source, failure, chain, restored_from)
                         SELECT $1, COALESCE(MAX(revision), 0) + 1, $2, $3, $4, $5, $6, $7
                         FROM plugin_revisions WHERE slot = $1
                         ON CONFLICT (slot, revision) DO NOTHING
                         RETURNING *",
                    )
                    .bind(&revision.slot)
                    .bind(at)
                    .bind(revision.activated_by)
                    .bind(&revision.source)
                    .bind(&revision.failure)
                    .bind(&chain)
                    .bind(revision.restored_from)
                    .fetch_optional(&self.pool)
                    .await?;
                    if let Some(row) = row {
                        return PluginRevision::try_from(row);
                    }
                }
                Err(StoreError::Conflict(
                    "too many concurrent changes of this plugin slot; try again".into(),
                ))
            }

            async fn plugin_revision(&self, slot: &str, revision: i64) -> StoreResult<Option<PluginRevision>> {
                let row: Option<PluginRevisionRow> = sqlx::query_as(
                    "SELECT * FROM plugin_revisions WHERE slot = $1 AND revision = $2",
                )
                .bind(slot)
                .bind(revision)
                .fetch_optional(&self.pool)
                .await?;
                row.map(PluginRevision::try_from).transpose()
            }

            async fn latest_plugin_revision(&self, slot: &str) -> StoreResult<Option<PluginRevision>> {
                let row: Option<PluginRevisionRow> = sqlx::query_as(
                    "SELECT * FROM plugin_revisions WHERE slot = $1 ORDER BY revision DESC LIMIT 1",
                )
                .bind(slot)
                .fetch_optional(&self.pool)
                .await?;
                row.map(PluginRevision::try_from).transpose()
            }

            async fn latest_plugin_revision_from(
                &self,
                slot: &str,
                source: &str,
            ) -> StoreResult<Option<PluginRevision>> {
                let row: Option<PluginRevisionRow> = sqlx::query_as(
                    "SELECT * FROM plugin_revisions WHERE slot = $1 AND source = $2
                     ORDER BY revision DESC LIMIT 1",
                )
                .bind(slot)
                .bind(source)
                .fetch_optional(&self.pool)
                .await?;
                row.map(PluginRevision::try_from).transpose()
            }

            async fn plugin_revisions(
                &self,
                slot: &str,
                before: Option<i64>,
                limit: u32,
            ) -> StoreResult<Vec<PluginRevision>> {
                let rows: Vec<PluginRevisionRow> = sqlx::query_as(
                    "SELECT * FROM plugin_revisions
                     WHERE slot = $1 AND ($2 IS NULL OR revision < $2)
                     ORDER BY revision DESC LIMIT $3",
                )
                .bind(slot)
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(PluginRevision::try_from).collect()
            }

            async fn referenced_plugin_modules(&self) -> StoreResult<Vec<String>> {
                // Few revisions, changed by hand: reading every distinct chain is cheap and
                // spares two dialects of JSON table functions.
                let chains: Vec<String> =
                    sqlx::query_scalar("SELECT DISTINCT chain FROM plugin_revisions")
                        .fetch_all(&self.pool)
                        .await?;
                let mut modules = std::collections::BTreeSet::new();
                for chain in &chains {
                    modules.extend($crate::store::rows::chain_modules(chain)?);
                }
                Ok(modules.into_iter().collect())
            }

            async fn insert_plugin_decisions(&self, batch: &[PluginDecision]) -> StoreResult<()> {
                if batch.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                for chunk in batch.chunks($crate::store::DECISION_ROWS_PER_STATEMENT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO plugin_decisions
                           (id, at, slot, plugin_name, plugin_sha256, verdict, reason, shadow, actor_id,
                            course_id, room_id, session_id, subject_id, request_id, content_sha256) ",
                    );
                    insert.push_values(chunk, |mut row, d| {
                        row.push_bind(d.id)
                            .push_bind(d.at)
                            .push_bind(&d.slot)
                            .push_bind(&d.plugin_name)
                            .push_bind(&d.plugin_sha256)
                            .push_bind(&d.verdict)
                            .push_bind(&d.reason)
                            .push_bind(d.shadow)
                            .push_bind(&d.actor_id)
                            .push_bind(&d.course_id)
                            .push_bind(&d.room_id)
                            .push_bind(&d.session_id)
                            .push_bind(&d.subject_id)
                            .push_bind(&d.request_id)
                            .push_bind(&d.content_sha256);
                    });
                    insert.push(" ON CONFLICT (id) DO NOTHING");
                    // As for messages: every batch size is its own statement text, so only
                    // single rows stay prepared.
                    insert.build().persistent(chunk.len() == 1).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn plugin_decisions(&self, query: &DecisionQuery) -> StoreResult<Vec<PluginDecision>> {
                // Only the filters given reach the SQL, so each query can use the index of
                // its most selective filter ("$1 IS NULL OR slot = $1" would defeat them).
                let mut select = sqlx::QueryBuilder::<$db>::new("SELECT * FROM plugin_decisions WHERE 1 = 1");
                if let Some(slot) = &query.slot {
                    select.push(" AND slot = ").push_bind(slot);
                }
                if let Some(verdict) = &query.verdict {
                    select.push(" AND verdict = ").push_bind(verdict);
                }
                if let Some(sha256) = &query.plugin_sha256 {
                    select.push(" AND plugin_sha256 = ").push_bind(sha256);
                }
                if let Some(shadow) = query.shadow {
                    select.push(" AND shadow = ").push_bind(shadow);
                }
                if let Some(since) = query.since {
                    select.push(" AND at >= ").push_bind(since);
                }
                if let Some(until) = query.until {
                    select.push(" AND at < ").push_bind(until);
                }
                if let Some(before) = query.before_id {
                    select.push(" AND id < ").push_bind(before);
                }
                select.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(query.limit));
                // An admin's occasional query in up to 128 shapes: not worth a place in each
                // connection's statement cache, where it would push out the hot statements.
                let rows: Vec<PluginDecision> =
                    select.build_query_as().persistent(false).fetch_all(&self.pool).await?;
                Ok(rows)
            }

            async fn prune_plugin_decisions(&self, before: DateTime<Utc>) -> StoreResult<u64> {
                let pruned = sqlx::query("DELETE FROM plugin_decisions WHERE at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(pruned)
            }
        }
    };
}

pub(crate) use impl_store;
