//! Password hashing with argon2id on a bounded pool of dedicated threads.
//!
//! A hash costs tens of milliseconds of CPU and `argon2_memory_kib` of memory (19 MiB by
//! default). On tokio's blocking pool a burst of sign-ups grew to hundreds of threads, each
//! keeping its own allocator arena full of argon2 blocks, and the process never gave that
//! memory back. Here a fixed number of threads take jobs from a bounded queue; when the queue
//! is full the caller is refused at once with a retry delay rather than left waiting behind
//! work the server cannot finish soon.
//!
//! Each thread keeps its argon2 memory from one job to the next. Memory for hashing is
//! therefore threads × `argon2_memory_kib`, reached after the first few hashes and exceeded
//! only while checking a hash made under a higher cost than configured now. And no hash pays
//! for fresh pages: with the memory mapped and zeroed anew for every hash (which is what
//! returning it to the system after each one costs), hashing was about 40% slower.
//!
//! A login for an unknown email verifies against a dummy hash of the same cost, so response
//! time does not reveal whether an account exists.

use std::{
    panic::AssertUnwindSafe,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, ParamsString, SaltString, rand_core::OsRng},
};
use tokio::sync::oneshot;

use crate::{config::Config, error::AppError};

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing thread is busy and the queue is full.
    #[error("password hashing is at capacity")]
    Busy { retry_after: Duration },
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<HashError> for AppError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy { retry_after } => AppError::Overloaded {
                message: "too many passwords are being checked at once, try again shortly".into(),
                retry_after,
            },
            HashError::Failed(cause) => AppError::Internal(cause),
        }
    }
}

/// How many hashing threads, and how many jobs may wait for one.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    /// 0 means one per core.
    pub threads: usize,
    pub queue: usize,
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    dummy_hash: Arc<str>,
    pool: Arc<HashPool>,
}

impl PasswordHasher {
    pub fn new(memory_kib: u32, iterations: u32, size: PoolSize) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let dummy = hash_with(
            &mut Scratch::new(0),
            &params,
            "lyceum-dummy-password-for-unknown-emails",
        )?;
        Ok(PasswordHasher {
            dummy_hash: dummy.into(),
            pool: Arc::new(HashPool::new(size, params.block_count())?),
            params,
        })
    }

    /// The hasher `config` describes: its argon2 cost and its pool size.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        PasswordHasher::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            PoolSize {
                threads: config.password_hash_threads,
                queue: config.password_hash_queue,
            },
        )
    }

    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let params = self.params.clone();
        Ok(self
            .pool
            .run(move |scratch| hash_with(scratch, &params, &password))
            .await??)
    }

    /// Verifies `password` against `hash`, or against the dummy hash when there is no account.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, HashError> {
        let exists = hash.is_some();
        let dummy = self.dummy_hash.clone();
        let ok = self
            .pool
            .run(move |scratch| verify_with(scratch, &password, hash.as_deref().unwrap_or(&dummy)))
            .await??;
        Ok(ok && exists)
    }
}

/// A PHC string (`$argon2id$v=19$m=…,t=…,p=1$salt$hash`) for `password` under a new salt.
fn hash_with(scratch: &mut Scratch, params: &Params, password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let length = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = scratch.with(params.block_count(), |blocks| {
        Output::init_with(length, |out| {
            argon
                .hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, blocks)
                .map_err(|_| argon2::password_hash::Error::Crypto)
        })
    });
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| anyhow::anyhow!("params: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(output.map_err(|e| anyhow::anyhow!("hashing password: {e}"))?),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `stored`. The algorithm, version and cost come
/// from `stored` itself, so hashes made under older settings keep working after the
/// configuration changes.
fn verify_with(scratch: &mut Scratch, password: &str, stored: &str) -> anyhow::Result<bool> {
    let parsed = PasswordHash::new(stored).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        anyhow::bail!("stored hash: no salt or no output");
    };
    let algorithm =
        Algorithm::try_from(parsed.algorithm).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
    let argon = Argon2::new(algorithm, version, params.clone());
    let computed = scratch.with(params.block_count(), |blocks| {
        Output::init_with(expected.len(), |out| {
            argon
                .hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, blocks)
                .map_err(|_| argon2::password_hash::Error::Crypto)
        })
    });
    // `Output`'s equality is constant-time.
    Ok(computed.map_err(|e| anyhow::anyhow!("verifying password: {e}"))? == expected)
}

/// A hashing thread's argon2 memory, kept between jobs.
struct Scratch {
    blocks: Vec<Block>,
    /// The configured cost in blocks: what the thread keeps.
    keep: usize,
}

impl Scratch {
    fn new(keep: usize) -> Scratch {
        Scratch {
            blocks: Vec::new(),
            keep,
        }
    }

    /// Runs `f` on `count` blocks. The kept buffer is filled on first use; a job that needs
    /// more (a hash made under a higher cost than configured now) gets a buffer of its own,
    /// freed when it ends, so what a thread keeps stays at the configured cost.
    fn with<T>(&mut self, count: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        if count > self.keep {
            return f(&mut vec![Block::default(); count]);
        }
        if self.blocks.len() < count {
            self.blocks.resize(self.keep, Block::default());
        }
        f(&mut self.blocks[..count])
    }
}

/// A job reports whether it ran: one whose caller has gone away is skipped.
type Job = Box<dyn FnOnce(&mut Scratch) -> bool + Send>;

/// Fixed threads fed by a bounded queue. Dropping it lets queued jobs drain and joins the
/// threads, so a server dropped in a test leaves no thread behind.
struct HashPool {
    queue: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
    capacity: usize,
    /// Moving average of a job's duration, in microseconds, for the retry delay.
    average_micros: Arc<AtomicU64>,
}

impl HashPool {
    /// `size` threads, each keeping up to `keep_blocks` of argon2 memory.
    fn new(size: PoolSize, keep_blocks: usize) -> anyhow::Result<HashPool> {
        let threads = match size.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (queue, jobs) = mpsc::sync_channel::<Job>(size.queue);
        let jobs = Arc::new(Mutex::new(jobs));
        let average_micros = Arc::new(AtomicU64::new(0));
        let mut pool = HashPool {
            queue: Some(queue),
            workers: Vec::with_capacity(threads),
            threads,
            capacity: size.queue,
            average_micros: average_micros.clone(),
        };
        for index in 0..threads {
            let jobs = jobs.clone();
            let average = average_micros.clone();
            let worker = std::thread::Builder::new()
                .name(format!("password-hash-{index}"))
                .spawn(move || work(&jobs, &average, Scratch::new(keep_blocks)))
                .map_err(|e| anyhow::anyhow!("starting a password hashing thread: {e}"))?;
            // On error, `pool` drops here and joins the threads already started.
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    /// Runs `job` on a pool thread, or refuses at once when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Scratch) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let queue = self
            .queue
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("password hashing has shut down"))?;
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move |scratch| {
            // A request abandoned while waiting (a client that disconnected) costs nothing.
            if done.is_closed() {
                return false;
            }
            // A panic drops `done`, which the caller sees as a failure; the thread lives on.
            if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(|| job(scratch))) {
                let _ = done.send(value);
            }
            true
        });
        match queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(HashError::Busy {
                    retry_after: self.retry_after(),
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(anyhow::anyhow!("password hashing threads have stopped").into());
            }
        }
        result
            .await
            .map_err(|_| anyhow::anyhow!("password hashing failed (the job panicked)").into())
    }

    /// How long a full queue takes to drain at the recent pace, in whole seconds (at least 1).
    fn retry_after(&self) -> Duration {
        let average = Duration::from_micros(self.average_micros.load(Ordering::Relaxed));
        // The queued jobs plus the ones running now, spread over the threads.
        let rounds = (self.capacity + self.threads).div_ceil(self.threads);
        let drain = average.saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX));
        Duration::from_secs(drain.as_secs_f64().ceil().max(1.0) as u64)
    }
}

fn work(jobs: &Mutex<Receiver<Job>>, average_micros: &AtomicU64, mut scratch: Scratch) {
    loop {
        // The lock is held only while waiting for a job, so one idle thread waits on the
        // channel and the others on the lock; a job goes to whichever is free.
        let job = match jobs.lock().unwrap_or_else(PoisonError::into_inner).recv() {
            Ok(job) => job,
            // The pool was dropped and the queue is empty.
            Err(_) => return,
        };
        let started = Instant::now();
        if job(&mut scratch) {
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            // Threads may race here; a lost update only makes the estimate a little staler.
            let previous = average_micros.load(Ordering::Relaxed);
            let next = if previous == 0 {
                micros
            } else {
                (previous * 7 + micros) / 8
            };
            average_micros.store(next, Ordering::Relaxed);
        }
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        // Closing the queue ends each thread once the jobs already queued are done.
        self.queue.take();
        let me = std::thread::current().id();
        for worker in self.workers.drain(..) {
            if worker.thread().id() != me {
                let _ = worker.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::AtomicUsize,
        mpsc::{Sender, channel},
    };

    use futures::poll;

    use super::*;

    const FAST: PoolSize = PoolSize {
        threads: 2,
        queue: 8,
    };

    #[tokio::test]
    async fn verifies_the_right_password_only() {
        let hasher = PasswordHasher::new(8 * 1024, 1, FAST).unwrap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            hasher
                .verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong horse".into(), Some(hash))
                .await
                .unwrap()
        );
        // No account: even the dummy's own password is refused.
        assert!(
            !hasher
                .verify("lyceum-dummy-password-for-unknown-emails".into(), None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_malformed_stored_hash_is_a_failure_not_a_mismatch() {
        let hasher = PasswordHasher::new(8 * 1024, 1, FAST).unwrap();
        let outcome = hasher
            .verify("anything".into(), Some("not-a-phc-string".into()))
            .await;
        assert!(matches!(outcome, Err(HashError::Failed(_))), "{outcome:?}");
    }

    #[test]
    fn hashes_are_standard_phc_strings_both_ways() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let params = Params::new(8 * 1024, 1, 1, None).unwrap();
        let mut scratch = Scratch::new(params.block_count());
        let ours = hash_with(&mut scratch, &params, "correct horse").unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{ours}");
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong horse", &parsed)
                .is_err()
        );
        // Made by the stock implementation under another algorithm, version and output length.
        let other = Params::new(8 * 1024, 2, 1, Some(24)).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::new(Algorithm::Argon2i, Version::V0x10, other)
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify_with(&mut scratch, "correct horse", &theirs).unwrap());
        assert!(!verify_with(&mut scratch, "wrong horse", &theirs).unwrap());
    }

    #[test]
    fn a_costlier_stored_hash_verifies_without_growing_the_kept_memory() {
        let small = Params::new(8 * 1024, 1, 1, None).unwrap();
        let large = Params::new(12 * 1024, 1, 1, None).unwrap();
        let mut scratch = Scratch::new(small.block_count());
        let hash = hash_with(&mut scratch, &large, "correct horse").unwrap();
        assert!(verify_with(&mut scratch, "correct horse", &hash).unwrap());
        assert!(!verify_with(&mut scratch, "wrong horse", &hash).unwrap());
        // Only what the configured cost needs is kept: here nothing, as no job has needed it.
        assert!(scratch.blocks.is_empty());
        let hash = hash_with(&mut scratch, &small, "correct horse").unwrap();
        assert_eq!(scratch.blocks.len(), small.block_count());
        assert!(verify_with(&mut scratch, "correct horse", &hash).unwrap());
        assert_eq!(scratch.blocks.len(), small.block_count());
    }

    /// A job for `pool` that holds its thread from the moment it starts until `release` sends.
    fn holding_job(
        started: Sender<()>,
        release: std::sync::mpsc::Receiver<()>,
    ) -> impl FnOnce(&mut Scratch) -> &'static str + Send + 'static {
        move |_| {
            started.send(()).unwrap();
            release.recv().unwrap();
            "held"
        }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_accepted_jobs_complete() {
        let pool = HashPool::new(
            PoolSize {
                threads: 1,
                queue: 2,
            },
            0,
        )
        .unwrap();
        let (started_tx, started) = channel();
        let (release, release_rx) = channel();
        let mut held = Box::pin(pool.run(holding_job(started_tx, release_rx)));
        assert!(poll!(&mut held).is_pending());
        started.recv().unwrap();
        // The only thread is busy: two jobs wait, the third finds the queue full.
        let mut first = Box::pin(pool.run(|_| "first"));
        let mut second = Box::pin(pool.run(|_| "second"));
        assert!(poll!(&mut first).is_pending());
        assert!(poll!(&mut second).is_pending());
        match pool.run(|_| "third").await {
            Err(HashError::Busy { retry_after }) => {
                assert!(retry_after >= Duration::from_secs(1), "{retry_after:?}");
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        release.send(()).unwrap();
        assert_eq!(held.await.unwrap(), "held");
        assert_eq!(first.await.unwrap(), "first");
        assert_eq!(second.await.unwrap(), "second");
        // Drained: there is room again.
        assert_eq!(pool.run(|_| "fourth").await.unwrap(), "fourth");
    }

    #[tokio::test]
    async fn a_job_whose_caller_left_is_skipped() {
        let pool = HashPool::new(
            PoolSize {
                threads: 1,
                queue: 2,
            },
            0,
        )
        .unwrap();
        let (started_tx, started) = channel();
        let (release, release_rx) = channel();
        let mut held = Box::pin(pool.run(holding_job(started_tx, release_rx)));
        assert!(poll!(&mut held).is_pending());
        started.recv().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let mut abandoned = Box::pin(pool.run({
            let ran = ran.clone();
            move |_| ran.fetch_add(1, Ordering::SeqCst)
        }));
        assert!(poll!(&mut abandoned).is_pending());
        drop(abandoned);
        release.send(()).unwrap();
        held.await.unwrap();
        // One thread takes jobs in order, so the abandoned one has been dealt with by now.
        pool.run(|_| ()).await.unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_panicking_job_fails_and_its_thread_lives_on() {
        let pool = HashPool::new(
            PoolSize {
                threads: 1,
                queue: 1,
            },
            0,
        )
        .unwrap();
        let outcome = pool.run(|_| -> u32 { panic!("deliberate") }).await;
        assert!(matches!(outcome, Err(HashError::Failed(_))), "{outcome:?}");
        assert_eq!(pool.run(|_| 7).await.unwrap(), 7);
    }

    #[test]
    fn dropping_the_pool_finishes_queued_work_and_joins_its_threads() {
        let pool = HashPool::new(
            PoolSize {
                threads: 2,
                queue: 4,
            },
            0,
        )
        .unwrap();
        assert_eq!(pool.workers.len(), 2);
        let done = Arc::new(AtomicUsize::new(0));
        let queue = pool.queue.as_ref().unwrap();
        for _ in 0..4 {
            let done = done.clone();
            queue
                .try_send(Box::new(move |_| {
                    std::thread::sleep(Duration::from_millis(20));
                    done.fetch_add(1, Ordering::SeqCst);
                    true
                }))
                .unwrap_or_else(|_| panic!("queue has room"));
        }
        drop(pool);
        // The threads ended only after the queue drained, and drop waited for them.
        assert_eq!(done.load(Ordering::SeqCst), 4);
        assert_eq!(Arc::strong_count(&done), 1, "no thread still holds a job");
    }

    #[test]
    fn zero_threads_means_one_per_core() {
        let pool = HashPool::new(
            PoolSize {
                threads: 0,
                queue: 1,
            },
            0,
        )
        .unwrap();
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(pool.workers.len(), cores);
    }
}
