//! What one user, one address and one socket may take of the gateway: sockets open at once
//! per user and per address (a handshake beyond either is refused with `RATE_LIMITED`), and
//! events per second per socket (an event beyond the budget is answered `RATE_LIMITED` with a
//! retry delay; a socket that keeps sending at full speed regardless is flooding, and is
//! disconnected).
//!
//! The per-feature limits (chat messages, signals) stay where they are; this budget sits in
//! front of every event, unknown ones included, so no event is free.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::domain::UserId;

#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    pub per_user: u32,
    pub per_address: u32,
    pub events_per_second: f64,
    pub event_burst: u32,
}

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooMany {
    ForUser,
    FromAddress,
}

/// The sockets open now, per user and per address.
pub struct OpenSockets {
    limits: SocketLimits,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    users: HashMap<UserId, u32>,
    addresses: HashMap<IpAddr, u32>,
}

impl OpenSockets {
    pub fn new(limits: SocketLimits) -> Self {
        OpenSockets {
            limits,
            counts: Mutex::new(Counts::default()),
        }
    }

    pub fn limits(&self) -> &SocketLimits {
        &self.limits
    }

    /// Counts a new socket of `user` from `address`, unless either is at its cap. Checked
    /// and counted under one lock, so handshakes racing each other cannot overshoot.
    pub fn open(&self, user: UserId, address: IpAddr) -> Result<(), TooMany> {
        let mut counts = self.counts();
        if counts.users.get(&user).copied().unwrap_or(0) >= self.limits.per_user {
            return Err(TooMany::ForUser);
        }
        if counts.addresses.get(&address).copied().unwrap_or(0) >= self.limits.per_address {
            return Err(TooMany::FromAddress);
        }
        *counts.users.entry(user).or_default() += 1;
        *counts.addresses.entry(address).or_default() += 1;
        Ok(())
    }

    /// Uncounts a socket [`Self::open`] counted.
    pub fn close(&self, user: UserId, address: IpAddr) {
        let mut counts = self.counts();
        release(&mut counts.users, user);
        release(&mut counts.addresses, address);
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Plain counters: a panic elsewhere cannot leave them half-updated.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One less for `key`; the entry goes when it reaches zero, so the maps hold only the users
/// and addresses with sockets open.
fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, key: K) {
    if let std::collections::hash_map::Entry::Occupied(mut entry) = map.entry(key) {
        *entry.get_mut() -= 1;
        if *entry.get() == 0 {
            entry.remove();
        }
    }
}

/// What a socket may do with its next event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spend {
    Allowed,
    /// Over budget: answer `RATE_LIMITED`; a token is due after `retry_after`.
    Refused {
        retry_after: Duration,
    },
    /// Refused a whole burst's worth of events in a row without slowing down.
    Flood,
}

/// One socket's event budget: a token bucket, and how many events in a row it refused.
#[derive(Debug)]
pub struct EventBudget(Mutex<Bucket>);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    refused_in_a_row: u32,
}

impl EventBudget {
    pub fn new(limits: &SocketLimits, now: Instant) -> Self {
        EventBudget(Mutex::new(Bucket {
            tokens: f64::from(limits.event_burst),
            at: now,
            refused_in_a_row: 0,
        }))
    }

    pub fn spend(&self, limits: &SocketLimits, now: Instant) -> Spend {
        let mut bucket = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens =
            (bucket.tokens + elapsed * limits.events_per_second).min(f64::from(limits.event_burst));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.refused_in_a_row = 0;
            return Spend::Allowed;
        }
        bucket.refused_in_a_row += 1;
        if bucket.refused_in_a_row > limits.event_burst {
            return Spend::Flood;
        }
        let wait = (1.0 - bucket.tokens) / limits.events_per_second;
        Spend::Refused {
            retry_after: Duration::from_secs_f64(wait),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SocketLimits = SocketLimits {
        per_user: 2,
        per_address: 3,
        events_per_second: 10.0,
        event_burst: 5,
    };

    #[test]
    fn a_user_and_an_address_may_hold_only_so_many_sockets() {
        let open = OpenSockets::new(LIMITS);
        let (ada, bob, cy) = (UserId::new(), UserId::new(), UserId::new());
        let (home, office) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        assert_eq!(open.open(ada, home), Ok(()));
        assert_eq!(open.open(ada, office), Ok(()));
        assert_eq!(open.open(ada, office), Err(TooMany::ForUser));
        assert_eq!(open.open(bob, home), Ok(()));
        assert_eq!(open.open(cy, home), Ok(()));
        assert_eq!(open.open(cy, home), Err(TooMany::FromAddress));
        // A refused handshake counted nothing; a closed socket frees its place.
        open.close(ada, home);
        assert_eq!(open.open(cy, home), Ok(()));
        open.close(ada, office);
        open.close(bob, home);
        open.close(cy, home);
        open.close(cy, home);
        let counts = open.counts();
        assert!(counts.users.is_empty() && counts.addresses.is_empty());
    }

    #[test]
    fn events_beyond_the_budget_are_refused_then_a_flood_is_called_one() {
        let start = Instant::now();
        let budget = EventBudget::new(&LIMITS, start);
        for _ in 0..5 {
            assert_eq!(budget.spend(&LIMITS, start), Spend::Allowed);
        }
        let Spend::Refused { retry_after } = budget.spend(&LIMITS, start) else {
            panic!("the sixth event at once is not refused");
        };
        assert_eq!(retry_after, Duration::from_millis(100));
        for _ in 0..4 {
            assert!(matches!(
                budget.spend(&LIMITS, start),
                Spend::Refused { .. }
            ));
        }
        assert_eq!(budget.spend(&LIMITS, start), Spend::Flood);
    }

    #[test]
    fn a_client_that_waits_is_served_again_and_forgiven() {
        let start = Instant::now();
        let budget = EventBudget::new(&LIMITS, start);
        for _ in 0..5 {
            budget.spend(&LIMITS, start);
        }
        for _ in 0..5 {
            assert!(matches!(
                budget.spend(&LIMITS, start),
                Spend::Refused { .. }
            ));
        }
        let later = start + Duration::from_millis(100);
        assert_eq!(budget.spend(&LIMITS, later), Spend::Allowed);
        // The refusals before the pause no longer count towards a flood.
        for _ in 0..5 {
            assert!(matches!(
                budget.spend(&LIMITS, later),
                Spend::Refused { .. }
            ));
        }
    }
}
