//! Accounts and tokens: register, login, refresh rotation with reuse detection, logout.
//!
//! Each login starts a token *family*. Every refresh marks the presented token used and issues
//! its successor in the same family; presenting a used token again means it was copied, so the
//! whole family is revoked and its sockets are disconnected.

use std::{net::IpAddr, sync::Arc, time::Duration};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Actor, accounts::AccountChanges, validate};
use crate::{
    domain::{Role, TokenFamilyId, User, UserId, now},
    error::{AppError, AppResult},
    ratelimit::RateLimiter,
    security::{jwt::JwtKeys, password::PasswordHasher, refresh},
    store::{NewRefreshToken, Rotation, Store},
};

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterInput {
    pub email: String,
    pub password: String,
    pub name: String,
    /// `student` (default) or `instructor`; admins are made with `lyceum user create`.
    pub role: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct LoginInput {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshInput {
    pub refresh_token: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub user: User,
    pub access_token: String,
    pub refresh_token: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
}

/// Limits on failed logins.
#[derive(Debug, Clone, Copy)]
pub struct LoginThrottle {
    pub per_email: u32,
    pub per_ip: u32,
    pub window: Duration,
}

pub struct AuthService {
    store: Arc<dyn Store>,
    jwt: Arc<JwtKeys>,
    hasher: PasswordHasher,
    limiter: Arc<dyn RateLimiter>,
    throttle: LoginThrottle,
    refresh_ttl: Duration,
    revocations: broadcast::Sender<TokenFamilyId>,
    accounts: Arc<AccountChanges>,
}

const BAD_CREDENTIALS: &str = "invalid email or password";
const BAD_REFRESH: &str = "invalid or expired refresh token";

fn no_account() -> AppError {
    AppError::NotFound("no account has that email".into())
}

impl AuthService {
    pub fn new(
        store: Arc<dyn Store>,
        jwt: Arc<JwtKeys>,
        hasher: PasswordHasher,
        limiter: Arc<dyn RateLimiter>,
        throttle: LoginThrottle,
        refresh_ttl: Duration,
    ) -> Self {
        let (revocations, _) = broadcast::channel(256);
        let accounts = Arc::new(AccountChanges::new(jwt.ttl()));
        AuthService {
            accounts,
            store,
            jwt,
            hasher,
            limiter,
            throttle,
            refresh_ttl,
            revocations,
        }
    }

    /// Families revoked by logout or reuse; the socket gateway disconnects their sockets.
    pub fn revocations(&self) -> broadcast::Receiver<TokenFamilyId> {
        self.revocations.subscribe()
    }

    /// Accounts changed outside the API, as this server follows them.
    pub fn account_changes(&self) -> Arc<AccountChanges> {
        self.accounts.clone()
    }

    /// Gives the account of `email` a new role (the command line's `user set-role`). Running
    /// servers refuse its tokens with the old role and drop its sockets within a second.
    pub async fn set_role(&self, email: &str, role: Role) -> AppResult<User> {
        let mut user = self.account(email).await?;
        if !self.store.change_role(user.id, role, now()).await? {
            return Err(no_account());
        }
        user.role = role;
        Ok(user)
    }

    /// Deletes the account of `email` with its logins, enrollments, files and messages (the
    /// command line's `user delete`); refused while it teaches a course. Running servers
    /// refuse its tokens and drop its sockets within a second.
    pub async fn delete_user(&self, email: &str) -> AppResult<User> {
        let user = self.account(email).await?;
        if !self.store.delete_user(user.id, now()).await? {
            return Err(no_account());
        }
        Ok(user)
    }

    async fn account(&self, email: &str) -> AppResult<User> {
        let email = email.trim().to_lowercase();
        self.store
            .credentials_by_email(&email)
            .await?
            .map(|c| c.user)
            .ok_or_else(no_account)
    }

    pub fn jwt(&self) -> &JwtKeys {
        &self.jwt
    }

    /// Creates an account; `role` may be anything, since the CLI uses this to make admins.
    pub async fn create_user(
        &self,
        email: &str,
        password: &str,
        name: &str,
        role: Role,
    ) -> AppResult<User> {
        let email = validate::email(email)?;
        validate::password(password)?;
        let name = validate::text("name", name, 1, 100)?;
        // A refusal (the hashing queue is full) happens here, before anything is written.
        let hash = self.hasher.hash(password.to_owned()).await?;
        let user = User {
            id: UserId::new(),
            email,
            name,
            role,
            created_at: now(),
        };
        self.store.insert_user(&user, &hash).await?;
        Ok(user)
    }

    pub async fn register(&self, input: RegisterInput) -> AppResult<Session> {
        let role = match input.role.as_deref() {
            None | Some("student") => Role::Student,
            Some("instructor") => Role::Instructor,
            Some(_) => {
                return Err(AppError::validation(
                    "role",
                    "role must be \"student\" or \"instructor\"",
                ));
            }
        };
        let user = self
            .create_user(&input.email, &input.password, &input.name, role)
            .await?;
        tracing::info!(user_id = %user.id, role = %user.role, "user registered");
        self.start_session(user).await
    }

    pub async fn login(&self, input: LoginInput, ip: IpAddr) -> AppResult<Session> {
        if input.email.is_empty() {
            return Err(AppError::validation("email", "email must not be empty"));
        }
        if input.password.is_empty() {
            return Err(AppError::validation(
                "password",
                "password must not be empty",
            ));
        }
        let email = input.email.trim().to_lowercase();
        let email_key = format!("login:email:{email}");
        let ip_key = format!("login:ip:{ip}");
        for (key, limit) in [
            (&email_key, self.throttle.per_email),
            (&ip_key, self.throttle.per_ip),
        ] {
            if let Err(limited) = self.limiter.check(key, limit).await {
                return Err(AppError::RateLimited {
                    retry_after: limited.retry_after,
                });
            }
        }
        // Over-long input cannot match a valid password; hashing it would only cost time.
        let plausible = input.password.chars().count() <= 1024;
        let credentials = self.store.credentials_by_email(&email).await?;
        let (user, hash) = match credentials {
            Some(c) if plausible => (Some(c.user), Some(c.password_hash)),
            _ => (None, None),
        };
        let ok = self.hasher.verify(input.password, hash).await?;
        match user {
            Some(user) if ok => {
                self.limiter.reset(&email_key).await;
                self.start_session(user).await
            }
            _ => {
                self.limiter.hit(&email_key, self.throttle.window).await;
                self.limiter.hit(&ip_key, self.throttle.window).await;
                tracing::info!(%ip, "failed login");
                Err(AppError::Unauthorized(BAD_CREDENTIALS.into()))
            }
        }
    }

    pub async fn refresh(&self, input: RefreshInput) -> AppResult<TokenPair> {
        let hash = refresh::hash(&input.refresh_token);
        let token = self
            .store
            .refresh_token_by_hash(&hash)
            .await?
            .ok_or_else(|| AppError::Unauthorized(BAD_REFRESH.into()))?;
        if token.revoked_at.is_some() {
            return Err(AppError::Unauthorized(BAD_REFRESH.into()));
        }
        if token.used_at.is_some() {
            self.revoke_on_reuse(token.family_id).await?;
            return Err(AppError::Unauthorized(BAD_REFRESH.into()));
        }
        if token.expires_at <= Utc::now() {
            return Err(AppError::Unauthorized(BAD_REFRESH.into()));
        }
        let user = self
            .store
            .user(token.user_id)
            .await?
            .ok_or_else(|| AppError::Unauthorized(BAD_REFRESH.into()))?;
        let (plain, next) = self.new_refresh_token(user.id, token.family_id);
        match self.store.rotate_refresh_token(token.id, &next).await? {
            Rotation::Rotated => {}
            // Another request rotated it between our read and our write: the same token was
            // presented twice, which is reuse.
            Rotation::AlreadyUsed => {
                self.revoke_on_reuse(token.family_id).await?;
                return Err(AppError::Unauthorized(BAD_REFRESH.into()));
            }
        }
        let access_token = self
            .jwt
            .issue(user.id, user.role, token.family_id)
            .map_err(AppError::internal)?;
        Ok(TokenPair {
            access_token,
            refresh_token: plain,
        })
    }

    /// Revokes the family of `refresh_token`. Unknown or already revoked tokens are fine:
    /// logging out twice is not an error.
    pub async fn logout(&self, input: RefreshInput) -> AppResult<()> {
        let hash = refresh::hash(&input.refresh_token);
        if let Some(token) = self.store.refresh_token_by_hash(&hash).await? {
            self.store.revoke_token_family(token.family_id).await?;
            let _ = self.revocations.send(token.family_id);
        }
        Ok(())
    }

    pub async fn me(&self, actor: &Actor) -> AppResult<User> {
        self.store
            .user(actor.id)
            .await?
            .ok_or_else(|| AppError::Unauthorized("the account no longer exists".into()))
    }

    /// The caller behind an access token.
    pub fn authenticate(&self, token: &str) -> AppResult<Actor> {
        self.authenticate_until(token).map(|(actor, _)| actor)
    }

    /// [`Self::authenticate`], and when the token expires (seconds since the Unix epoch):
    /// a socket holds its token long after the handshake checked it.
    pub fn authenticate_until(&self, token: &str) -> AppResult<(Actor, i64)> {
        let claims = self
            .jwt
            .verify(token)
            .map_err(|_| AppError::Unauthorized("invalid or expired access token".into()))?;
        if !self.accounts.allows(claims.sub, claims.role) {
            return Err(AppError::Unauthorized(
                "the account changed since this token was issued; refresh it or sign in again"
                    .into(),
            ));
        }
        let actor = Actor {
            id: claims.sub,
            role: claims.role,
            family: claims.sid,
        };
        Ok((actor, claims.exp))
    }

    async fn revoke_on_reuse(&self, family: TokenFamilyId) -> AppResult<()> {
        let revoked = self.store.revoke_token_family(family).await?;
        tracing::warn!(family = %family, revoked, "refresh token reused; family revoked");
        let _ = self.revocations.send(family);
        Ok(())
    }

    async fn start_session(&self, user: User) -> AppResult<Session> {
        let family = TokenFamilyId::new();
        let (plain, token) = self.new_refresh_token(user.id, family);
        self.store.insert_refresh_token(&token).await?;
        let access_token = self
            .jwt
            .issue(user.id, user.role, family)
            .map_err(AppError::internal)?;
        Ok(Session {
            user,
            access_token,
            refresh_token: plain,
        })
    }

    fn new_refresh_token(&self, user: UserId, family: TokenFamilyId) -> (String, NewRefreshToken) {
        let plain = refresh::generate();
        let created_at = now();
        let ttl =
            chrono::Duration::from_std(self.refresh_ttl).unwrap_or(chrono::Duration::days(30));
        let token = NewRefreshToken {
            id: Uuid::now_v7(),
            family_id: family,
            user_id: user,
            token_hash: refresh::hash(&plain),
            created_at,
            expires_at: created_at + ttl,
        };
        (plain, token)
    }
}
