//! Accounts changed outside the API — `lyceum user set-role` and `lyceum user delete`, run
//! beside live servers — reach every server through the database, which each one polls for
//! recent changes once a second. Access tokens are stateless and carry the role, so until a
//! changed user's tokens have all expired, a token carrying a role the user no longer has
//! (any token of a deleted user) is refused, and the user's sockets are dropped at once. A
//! refresh then issues a token with the new role; a deleted user has nothing to refresh.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::{
    domain::{Role, UserId},
    store::{AccountChange, Store},
};

/// How often the database is asked for changes: the bound on how long a changed user keeps
/// their sockets and old tokens.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Changes read per poll; more wait for the next one.
const PAGE: u32 = 1_000;

/// What this server knows of recent account changes.
pub struct AccountChanges {
    /// Per changed user, the newest change.
    recent: RwLock<HashMap<UserId, AccountChange>>,
    /// Whether `recent` is empty: the usual case, checked without a lock on every request.
    none: AtomicBool,
    /// How long a change matters: an access token's lifetime plus clock slack.
    window: Duration,
    changed: broadcast::Sender<UserId>,
}

impl AccountChanges {
    pub fn new(token_ttl: Duration) -> Self {
        let (changed, _) = broadcast::channel(256);
        AccountChanges {
            recent: RwLock::new(HashMap::new()),
            none: AtomicBool::new(true),
            window: token_ttl + Duration::from_secs(60),
            changed,
        }
    }

    /// Whether a token of `user` carrying `role` still speaks for them.
    pub fn allows(&self, user: UserId, role: Role) -> bool {
        if self.none.load(Ordering::Acquire) {
            return true;
        }
        let recent = self.recent.read().unwrap_or_else(|e| e.into_inner());
        match recent.get(&user) {
            None => true,
            Some(change) => change.role == Some(role),
        }
    }

    /// Users whose account changed, as this server learns of it; the socket gateway drops
    /// their sockets.
    pub fn subscribe(&self) -> broadcast::Receiver<UserId> {
        self.changed.subscribe()
    }

    /// Takes in changes read from the database (in any order, repeats included) and forgets
    /// those older than the window; the users whose change is news.
    pub fn apply(&self, changes: &[AccountChange], now: DateTime<Utc>) -> Vec<UserId> {
        let mut recent = self.recent.write().unwrap_or_else(|e| e.into_inner());
        let mut news = Vec::new();
        for change in changes {
            let newer = recent
                .get(&change.user)
                .is_none_or(|known| known.seq < change.seq);
            if newer {
                recent.insert(change.user, change.clone());
                news.push(change.user);
            }
        }
        let horizon = now - self.window;
        recent.retain(|_, change| change.at > horizon);
        self.none.store(recent.is_empty(), Ordering::Release);
        news.sort();
        news.dedup();
        news
    }

    /// Polls `store` until the server stops. A poll that fails is logged and retried: until
    /// it succeeds, changes wait, and nothing already known is forgotten.
    pub async fn follow(self: Arc<Self>, store: Arc<dyn Store>) {
        let mut every = tokio::time::interval(POLL_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            every.tick().await;
            let now = Utc::now();
            let since = now - self.window;
            match store.account_changes(since, PAGE).await {
                Ok(changes) => {
                    failing = false;
                    for user in self.apply(&changes, now) {
                        tracing::info!(user = %user, "account changed; its sockets and older tokens are dropped");
                        let _ = self.changed.send(user);
                    }
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot read account changes; retrying every second");
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(seq: i64, user: UserId, role: Option<Role>, at: DateTime<Utc>) -> AccountChange {
        AccountChange {
            seq,
            user,
            role,
            at,
        }
    }

    #[test]
    fn tokens_with_the_role_a_user_lost_are_refused_until_the_window_passes() {
        let changes = AccountChanges::new(Duration::from_secs(900));
        let (ada, bob) = (UserId::new(), UserId::new());
        let now = Utc::now();
        assert!(changes.allows(ada, Role::Admin), "no change, no refusal");

        let news = changes.apply(&[change(1, ada, Some(Role::Student), now)], now);
        assert_eq!(news, vec![ada]);
        assert!(!changes.allows(ada, Role::Admin));
        assert!(changes.allows(ada, Role::Student));
        assert!(changes.allows(bob, Role::Admin), "others are untouched");

        // Read again on the next poll: not news.
        assert!(
            changes
                .apply(&[change(1, ada, Some(Role::Student), now)], now)
                .is_empty()
        );
        // After a token's lifetime and the slack, every token with the old role has expired.
        let later = now + chrono::Duration::seconds(961);
        changes.apply(&[], later);
        assert!(changes.allows(ada, Role::Admin));
    }

    #[test]
    fn the_newest_change_wins_whatever_order_they_are_read_in() {
        let changes = AccountChanges::new(Duration::from_secs(900));
        let ada = UserId::new();
        let now = Utc::now();
        changes.apply(
            &[
                change(7, ada, None, now),
                change(5, ada, Some(Role::Instructor), now),
            ],
            now,
        );
        for role in [Role::Student, Role::Instructor, Role::Admin] {
            assert!(!changes.allows(ada, role), "a deleted user has no role");
        }
    }
}
