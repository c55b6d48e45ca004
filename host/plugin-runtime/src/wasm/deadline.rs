//! Telling a runaway plugin from one that was merely kept off the CPU.
//!
//! The deadline is counted in epoch ticks, which are wall-clock time: on a busy machine a
//! call that needs microseconds can be preempted past its deadline. So when a call reaches
//! its deadline it is not stopped at once: it gets a short grace period, and the thread's
//! CPU clock tells whether it spent that period running. A runaway plugin did, and is
//! stopped; a preempted one has usually finished by then, or gets another period, up to a
//! hard limit of five deadlines.

use std::time::Duration;

use wasmtime::UpdateDeadline;

/// The state of one call past its deadline.
pub(crate) struct Overtime {
    grace_ticks: u64,
    grace: Duration,
    max_extra_ticks: u64,
    extra_ticks: u64,
    cpu_mark: Option<Duration>,
    timed_out: bool,
}

impl Overtime {
    /// About 10 ms of grace, and never fewer than two ticks.
    const GRACE: Duration = Duration::from_millis(10);

    pub(crate) fn new(deadline_ticks: u64, tick: Duration) -> Self {
        let grace_ticks = u64::try_from(Self::GRACE.as_nanos().div_ceil(tick.as_nanos().max(1)))
            .unwrap_or(u64::MAX)
            .max(2);
        Self {
            grace_ticks,
            grace: tick.saturating_mul(u32::try_from(grace_ticks).unwrap_or(u32::MAX)),
            max_extra_ticks: deadline_ticks.saturating_mul(4),
            extra_ticks: 0,
            cpu_mark: None,
            timed_out: false,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.extra_ticks = 0;
        self.cpu_mark = None;
        self.timed_out = false;
    }

    pub(crate) fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// Called by wasmtime each time the call reaches its (extended) deadline.
    pub(crate) fn on_deadline(&mut self) -> UpdateDeadline {
        let now = thread_cpu_time();
        let ran_through_grace = match (self.cpu_mark, now) {
            // First time past the deadline: whatever happened before, watch it now.
            (None, _) => false,
            (Some(mark), Some(now)) => now.saturating_sub(mark) >= self.grace / 2,
            // Without a CPU clock the grace period is all a call gets.
            (Some(_), None) => true,
        };
        if ran_through_grace || self.extra_ticks + self.grace_ticks > self.max_extra_ticks {
            self.timed_out = true;
            return UpdateDeadline::Interrupt;
        }
        self.cpu_mark = Some(now.unwrap_or_default());
        self.extra_ticks += self.grace_ticks;
        UpdateDeadline::Continue(self.grace_ticks)
    }
}

/// CPU time consumed by the calling thread.
#[cfg(unix)]
fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` only writes the `timespec` we pass, which lives on our stack.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

#[cfg(not(unix))]
fn thread_cpu_time() -> Option<Duration> {
    None
}
