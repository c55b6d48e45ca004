//! Backpressure on the engine's instance slots. The pooling allocator has a fixed number of
//! them (`engine.max_instances`); a call that finds none free waits, up to its deadline, for
//! an instance to go back to its plugin's pool or for a slot to be freed, instead of failing
//! at once. Past the deadline it fails as `busy`: the caller gets an answer, the plugin's
//! failure mode applies, and the plugin's circuit is left alone since the plugin did
//! nothing wrong.

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use wasmtime::PoolConcurrencyLimitError;

/// The gates of a runtime's plugins, to wake their waiters when a slot is freed.
#[derive(Default)]
pub(crate) struct Slots {
    gates: Mutex<Vec<Weak<SlotGate>>>,
}

impl Slots {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    /// A gate for one more plugin.
    pub(crate) fn gate(&self) -> Arc<SlotGate> {
        let gate = Arc::new(SlotGate::default());
        let mut gates = lock(&self.gates);
        gates.retain(|gate| gate.strong_count() > 0);
        gates.push(Arc::downgrade(&gate));
        gate
    }

    /// A slot was freed: any plugin may use it, so one waiter of each is woken (not every
    /// waiter: under load hundreds of threads wait, and one slot serves one of them).
    fn freed(&self) {
        let gates: Vec<Arc<SlotGate>> =
            lock(&self.gates).iter().filter_map(Weak::upgrade).collect();
        for gate in gates {
            gate.released();
        }
    }
}

/// Where the calls of one plugin wait for an instance.
#[derive(Default)]
pub(crate) struct SlotGate {
    /// Counts the events after which an instance may be had; a waiter sleeps until it moves.
    generation: Mutex<u64>,
    changed: Condvar,
}

impl SlotGate {
    /// Taken before looking for an instance, so that an event between the look and the
    /// wait is not missed.
    pub(crate) fn ticket(&self) -> u64 {
        *lock(&self.generation)
    }

    /// Sleeps until an instance may be had after `ticket`; false once `until` passed with
    /// none.
    pub(crate) fn wait(&self, ticket: u64, until: Instant) -> bool {
        let mut generation = lock(&self.generation);
        while *generation == ticket {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            generation = self
                .changed
                .wait_timeout(generation, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// One instance can be had: an idle one went back to this plugin's pool, or a slot was
    /// freed. One waiter is enough; if a newcomer takes it first, that call releases it
    /// in turn.
    pub(crate) fn released(&self) {
        *lock(&self.generation) += 1;
        self.changed.notify_one();
    }
}

thread_local! {
    /// Set while a call runs on an async worker thread (see [`on_async_worker`]).
    static NO_WAITING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `call` where it must not sleep — an async worker, which other tasks share: a call in
/// it that finds every slot taken fails as busy at once instead of waiting for one.
pub(crate) fn on_async_worker<T>(call: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            NO_WAITING.set(self.0);
        }
    }
    let _restore = Restore(NO_WAITING.replace(true));
    call()
}

/// Whether a call on this thread may wait for a slot.
pub(crate) fn may_wait() -> bool {
    !NO_WAITING.get()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Held by each instance, after its store: dropping the instance frees its slot first, then
/// wakes the waiters.
pub(crate) struct SlotToken(Arc<Slots>);

impl SlotToken {
    pub(crate) fn new(slots: &Arc<Slots>) -> Self {
        Self(slots.clone())
    }
}

impl Drop for SlotToken {
    fn drop(&mut self) {
        self.0.freed();
    }
}

/// Whether instantiation failed only because every slot of the pool is taken.
pub(crate) fn exhausted(error: &wasmtime::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.is::<PoolConcurrencyLimitError>())
}

/// Lets one warning through per `every`, so that a saturated engine says so without
/// writing a line per refused call.
pub(crate) struct Throttle {
    every: Duration,
    last: Mutex<Option<Instant>>,
}

impl Throttle {
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            last: Mutex::new(None),
        }
    }

    pub(crate) fn allow(&self) -> bool {
        let mut last = lock(&self.last);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.every) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_wakes_when_a_slot_is_freed_by_any_plugin() {
        let slots = Slots::new();
        let gate = slots.gate();
        let _other = slots.gate();
        let ticket = gate.ticket();
        let freer = {
            let slots = slots.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                drop(SlotToken::new(&slots));
            })
        };
        let started = Instant::now();
        assert!(gate.wait(ticket, started + Duration::from_secs(10)));
        assert!(started.elapsed() < Duration::from_secs(5));
        freer.join().unwrap();
    }

    #[test]
    fn a_release_before_the_wait_is_not_missed() {
        let gate = Slots::new().gate();
        let ticket = gate.ticket();
        gate.released();
        let started = Instant::now();
        assert!(gate.wait(ticket, started + Duration::from_secs(10)));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_waiter_gives_up_at_its_deadline() {
        let gate = Slots::new().gate();
        let started = Instant::now();
        assert!(!gate.wait(gate.ticket(), started + Duration::from_millis(30)));
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn the_throttle_lets_one_line_through_per_period() {
        let throttle = Throttle::new(Duration::from_secs(60));
        assert!(throttle.allow());
        assert!((0..1000).all(|_| !throttle.allow()));
    }
}
