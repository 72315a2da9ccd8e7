//! The bound on password hashing: a few dedicated threads, one argon2
//! computation each at a time, and a short wait in front of them.
//!
//! Rules: at most `threads` hashes run at once in an instance (a process runs
//! one), one per core by default; a caller waits at most `queue_wait` for a
//! thread, first come first served, and is then refused with
//! [`Error::Busy`] having changed nothing, so that it gives back what it
//! reserved (a throttle attempt) and is answered 503 with a `Retry-After`.
//! Each thread keeps its argon2 memory ([`password::Memory`]) while work keeps
//! coming and gives it back to the system after [`KEEP_MEMORY`] without work:
//! memory is bounded by the threads during a flood and returns after it. A
//! hash whose caller has gone away keeps its thread until it ends. The threads
//! run below the executor's priority (see [`lower_priority`]): serving API
//! calls comes before checking passwords. The callers waiting and those
//! refused are counted for the metrics ([`Hashing::load`]).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::password::{self, Memory};
use super::{Error, Result};

/// How long a thread keeps its memory without work.
pub const KEEP_MEMORY: Duration = Duration::from_secs(2);
/// What a refused caller is told to wait (seconds).
pub const RETRY_AFTER_SECS: i64 = 2;

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// The hashing threads of one instance and the queue in front of them.
pub struct Hashing {
    threads: u32,
    /// One per thread: a caller holding one has a thread to itself.
    permits: Arc<Semaphore>,
    queue: Arc<Queue>,
    queue_wait: Duration,
    /// Callers waiting for a thread now.
    waiting: AtomicUsize,
    /// Callers refused after `queue_wait`, since start.
    refused: AtomicU64,
}

/// The hashing threads' load, for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub threads: u32,
    /// Threads taken (hashing, or handed a hash).
    pub busy: u32,
    /// Callers waiting for a thread.
    pub waiting: usize,
    /// Callers refused since start.
    pub refused: u64,
}

/// Counts a caller as waiting for as long as it lives (a caller that goes
/// away while waiting stops counting too).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Jobs handed to the threads (never more than there are threads).
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// Every hashing thread taken, for as long as this lives (tests fill the
/// bound with it).
pub struct HeldThreads(#[expect(dead_code, reason = "held for its drop")] OwnedSemaphorePermit);

impl Hashing {
    /// Starts `threads` hashing threads (at least one).
    pub fn start(threads: usize, queue_wait: Duration) -> std::io::Result<Self> {
        let threads = u32::try_from(threads.max(1)).unwrap_or(u32::MAX);
        let queue = Arc::new(Queue::default());
        for n in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new().name(format!("argon2-{n}")).spawn(move || serve(&queue))?;
        }
        let permits = Arc::new(Semaphore::new(threads as usize));
        Ok(Self { threads, permits, queue, queue_wait, waiting: AtomicUsize::new(0), refused: AtomicU64::new(0) })
    }

    /// A PHC string for a new password.
    pub async fn hash(&self, password: String) -> Result<String> {
        self.run(move |memory| password::hash(memory, &password)).await
    }

    /// Whether `password` is the one behind `phc`; `None` (no such account)
    /// checks the dummy hash, the same work, and is never right.
    pub async fn check(&self, phc: Option<String>, password: String) -> Result<bool> {
        self.run(move |memory| match phc {
            Some(phc) => password::verify(memory, &phc, &password),
            None => password::verify_dummy(memory, &password).map(|()| false),
        })
        .await
    }

    /// Takes every thread's place, waiting as long as it takes.
    pub async fn hold_all(&self) -> Result<HeldThreads> {
        let permit = self.permits.clone().acquire_many_owned(self.threads).await.map_err(stopped)?;
        Ok(HeldThreads(permit))
    }

    /// How loaded the threads are now.
    pub fn load(&self) -> Load {
        let free = u32::try_from(self.permits.available_permits()).unwrap_or(u32::MAX);
        Load {
            threads: self.threads,
            busy: self.threads.saturating_sub(free),
            waiting: self.waiting.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// Runs `work` on a hashing thread once one is free, or refuses.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce(&mut Memory) -> Result<T> + Send + 'static) -> Result<T> {
        let waiting = Waiting::enter(&self.waiting);
        let permit = match tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned()).await {
            Ok(permit) => permit.map_err(stopped)?,
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Error::Busy { retry_after: RETRY_AFTER_SECS });
            }
        };
        drop(waiting);
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let result = work(memory);
            // The thread is free again before the caller hears back.
            drop(permit);
            // A caller that has gone away does not want the answer.
            let _ = tx.send(result);
        });
        self.queue.push(job);
        rx.await.map_err(|_| Error::Internal(anyhow::anyhow!("a password hashing thread failed")))?
    }
}

fn stopped(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::internal(e, "the password hashing threads have stopped")
}

impl Drop for Hashing {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.ready.notify_all();
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, job: Job) {
        self.lock().jobs.push_back(job);
        self.ready.notify_one();
    }

    /// The next job, `None` once closed; `memory` is given back each time
    /// [`KEEP_MEMORY`] passes without one.
    fn next(&self, memory: &mut Memory) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            let (next, waited) = self.ready.wait_timeout(state, KEEP_MEMORY).unwrap_or_else(PoisonError::into_inner);
            state = next;
            if waited.timed_out() && state.jobs.is_empty() {
                drop(state);
                memory.release();
                state = self.lock();
            }
        }
    }
}

/// One hashing thread: takes jobs until the instance is gone.
fn serve(queue: &Queue) {
    lower_priority();
    let mut memory = Memory::default();
    while let Some(job) = queue.next(&mut memory) {
        // A panic drops the job (its caller hears of a failure) but never
        // the thread.
        if catch_unwind(AssertUnwindSafe(|| job(&mut memory))).is_err() {
            memory = Memory::default();
        }
    }
}

/// Hashing gives way to the executor threads when both want a core: the
/// hashing threads run under `SCHED_IDLE`, so a thread serving requests that
/// wakes up takes the core at once, and hashing runs on what serving leaves
/// (nice 19 alone, which weighs 15 against the executor's 1024, still let a
/// hash hold a core for a few milliseconds: `auth/test`'s p99 doubled during
/// a sign-in flood). Where that policy cannot be set, nice 19; where neither
/// can, hashing shares the cores evenly.
fn lower_priority() {
    use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    let native = thread_priority::thread_native_id();
    if thread_priority::set_thread_priority_and_policy(native, ThreadPriority::Min, idle).is_ok() {
        return;
    }
    if let Err(e) = thread_priority::set_current_thread_priority(ThreadPriority::Min) {
        tracing::warn!(error = ?e, "could not lower the priority of a password hashing thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_caller_waits_for_a_thread_then_is_refused_and_then_served() {
        let hashing = Hashing::start(1, Duration::from_millis(20)).unwrap();
        let held = hashing.hold_all().await.unwrap();
        let refused = hashing.check(None, "x".into()).await;
        assert!(matches!(refused, Err(Error::Busy { retry_after: RETRY_AFTER_SECS })), "{refused:?}");
        drop(held);
        let phc = hashing.hash("right".into()).await.unwrap();
        assert!(hashing.check(Some(phc.clone()), "right".into()).await.unwrap());
        assert!(!hashing.check(Some(phc), "wrong".into()).await.unwrap());
        assert!(!hashing.check(None, "right".into()).await.unwrap(), "the dummy hash is never right");
    }
}
