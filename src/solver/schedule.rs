//! Running a build's stages as a graph: each stage starts as soon as every stage it depends on
//! has finished, at most `limit` at once, and the first failure cancels the rest.
//!
//! BuildKit solves the whole LLB graph concurrently, one goroutine per vertex, and a failing
//! vertex cancels the solve's context, so vertices still running end `CANCELED`
//! (`solver/jobs.go`, `solver/scheduler.go`). Here the unit of scheduling is a stage: its steps
//! form a chain, so running them in order loses nothing, while independent stages (the
//! `builder` and `assets` of a multi-stage Dockerfile) overlap. The number of stages running at
//! once is bounded (by the cores, see [`default_limit`]) because most steps are CPU-bound
//! (compression, tar, compilers in RUN).
//!
//! - [`run_graph`]: the scheduler: scoped worker threads over a ready queue (a stage whose
//!   dependencies are all done), file order first, no async runtime.
//! - [`Cancel`]: the build's cancellation token. The first failure trips it ([`Cancel::fail`]);
//!   stage runners poll it between steps ([`Cancel::is_canceled`]) and a step that waits on
//!   something outside the process (a RUN's container) registers a hook with
//!   [`Cancel::on_cancel`] that ends the wait (kills the container).
//!
//! Not responsible for: what a stage does (the caller's job closure), progress events (the
//! caller reports a step only when it really started; a step that was canceled gets no
//! terminal event, so the renderers show it `CANCELED` when the build ends).

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

/// The environment variable that bounds how many stages run at once (`1`: one stage at a
/// time, in file order), as buildkitd's `max-parallelism` setting bounds its solver.
pub const MAX_PARALLELISM_ENV: &str = "KILN_MAX_PARALLELISM";

/// How many stages may run at once: [`MAX_PARALLELISM_ENV`] when set to a positive number,
/// else the cores this process may use.
pub fn default_limit() -> NonZeroUsize {
    std::env::var(MAX_PARALLELISM_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<NonZeroUsize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN))
}

/// Why a job (a stage) stopped without a result.
#[derive(Debug)]
pub enum Halt<E> {
    /// It failed first: this is the build's error.
    Failed(E),
    /// It stopped because the build was canceled (another job failed first, or the caller
    /// canceled the build).
    Canceled,
}

/// A hook run when the build is canceled.
type Hook = Box<dyn FnOnce() + Send>;

/// The build's cancellation token, shared by reference by every stage of a build.
///
/// Tripped once (by the first failure, or by the caller); never reset.
#[derive(Default)]
pub struct Cancel {
    tripped: AtomicBool,
    /// Hooks of the steps waiting on something right now, by registration number; `None` once
    /// tripped (later hooks run at once).
    hooks: Mutex<Option<Vec<(u64, Hook)>>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("canceled", &self.is_canceled())
            .finish_non_exhaustive()
    }
}

impl Cancel {
    pub fn new() -> Self {
        Self {
            tripped: AtomicBool::new(false),
            hooks: Mutex::new(Some(Vec::new())),
            next: AtomicU64::new(0),
        }
    }

    /// Whether the build was canceled: no new step may start.
    pub fn is_canceled(&self) -> bool {
        self.tripped.load(Ordering::Acquire)
    }

    /// Cancel the build: the registered hooks run (on this thread, now). Returns whether this
    /// call did it (`false`: it was canceled already).
    pub fn cancel(&self) -> bool {
        let mut hooks = self.lock();
        if self.tripped.swap(true, Ordering::AcqRel) {
            return false;
        }
        // Run under the lock: once a guard's drop returns, its hook is not running and never
        // will (a hook may signal a process that its step is about to reap).
        for (_, hook) in hooks.take().unwrap_or_default() {
            hook();
        }
        true
    }

    /// Record a failure: the first one cancels the build and is returned as
    /// [`Halt::Failed`]; a later one (often a consequence of the cancellation, such as a RUN
    /// whose container was killed) is [`Halt::Canceled`].
    pub fn fail<E>(&self, error: E) -> Halt<E> {
        if self.cancel() {
            Halt::Failed(error)
        } else {
            Halt::Canceled
        }
    }

    /// Run `hook` if the build is canceled while the returned guard lives (at once, if it is
    /// canceled already). The hook must be quick and must not use this token (it runs under
    /// the token's lock); it typically sends `SIGKILL` to a container the step is waiting for.
    pub fn on_cancel(&self, hook: impl FnOnce() + Send + 'static) -> CancelGuard<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut hooks = self.lock();
        match hooks.as_mut() {
            Some(list) => list.push((id, Box::new(hook))),
            None => hook(),
        }
        CancelGuard { cancel: self, id }
    }

    /// Send `SIGKILL` to process `pid` if the build is canceled while the returned guard lives:
    /// a RUN step calls this with its container's PID between starting the container and
    /// waiting for it, so a cancellation ends the wait (BuildKit kills the processes of a
    /// canceled exec). The process is held by a pidfd from now on, so a cancellation that comes
    /// after it was reaped signals nothing, whatever process has its PID by then.
    pub fn kill_on_cancel(&self, pid: i32) -> std::io::Result<CancelGuard<'_>> {
        use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};
        let pid = Pid::from_raw(pid).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "PID 0 is not a process")
        })?;
        let pidfd = pidfd_open(pid, PidfdFlags::empty())?;
        Ok(self.on_cancel(move || {
            // Already gone: nothing to stop.
            let _ = pidfd_send_signal(&pidfd, Signal::KILL);
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Vec<(u64, Hook)>>> {
        // A panicking hook leaves the list as it was; keep going.
        self.hooks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Unregisters a [`Cancel::on_cancel`] hook when dropped.
#[must_use = "the hook is unregistered when the guard is dropped"]
pub struct CancelGuard<'a> {
    cancel: &'a Cancel,
    id: u64,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if let Some(list) = self.cancel.lock().as_mut() {
            list.retain(|(id, _)| *id != self.id);
        }
    }
}

/// The results of the jobs that finished, for a job to read its dependencies'.
pub struct Finished<'a, T> {
    results: &'a [OnceLock<T>],
}

impl<T> Finished<'_, T> {
    /// Job `i`'s result; always there for a job's dependencies.
    pub fn get(&self, i: usize) -> Option<&T> {
        self.results.get(i)?.get()
    }
}

/// The ready queue and the bookkeeping the workers share.
struct Queue {
    /// Jobs whose dependencies are all done, not yet started (lowest index first).
    ready: BTreeSet<usize>,
    /// For each job, how many of its dependencies are not done yet.
    waiting_on: Vec<usize>,
    /// Jobs not finished yet.
    unfinished: usize,
    /// A job stopped without a result: start nothing more.
    stopped: bool,
}

/// Run `jobs` jobs, job `i` once every job in `deps[i]` has finished, at most `limit` at once,
/// and return their results in order.
///
/// `job(i, finished)` runs on a worker thread; `finished` has the results of `i`'s
/// dependencies. When a job returns [`Halt`], no further job starts; running jobs run to their
/// end (they see `cancel` tripped, if the halt came from [`Cancel::fail`]). The result is the
/// [`Halt::Failed`] error if a job failed, [`Halt::Canceled`] if the build was canceled without
/// one, and every job's result otherwise.
///
/// # Panics
/// If `deps` names a job that does not exist or has a cycle (the frontend rejects both), or if a
/// job panics (after the other running jobs end; `cancel` is tripped first so they end soon).
pub fn run_graph<T, E, F>(
    deps: &[Vec<usize>],
    limit: NonZeroUsize,
    cancel: &Cancel,
    job: F,
) -> Result<Vec<T>, Halt<E>>
where
    T: Send + Sync,
    E: Send,
    F: Fn(usize, &Finished<'_, T>) -> Result<T, Halt<E>> + Sync,
{
    let n = deps.len();
    let mut dependents = vec![Vec::new(); n];
    let mut waiting_on = vec![0; n];
    for (i, ds) in deps.iter().enumerate() {
        let unique: BTreeSet<usize> = ds.iter().copied().collect();
        for &d in &unique {
            assert!(d < n, "job {i} depends on job {d}, which does not exist");
            dependents[d].push(i);
        }
        waiting_on[i] = unique.len();
    }
    assert_acyclic(&dependents, &waiting_on);
    let ready = (0..n).filter(|&i| waiting_on[i] == 0).collect();
    let queue = Mutex::new(Queue {
        ready,
        waiting_on,
        unfinished: n,
        stopped: false,
    });
    let changed = Condvar::new();
    let results: Vec<OnceLock<T>> = (0..n).map(|_| OnceLock::new()).collect();
    let failure: Mutex<Option<E>> = Mutex::new(None);

    let worker = || {
        let finished = Finished { results: &results };
        while let Some(i) = next_job(&queue, &changed, cancel) {
            // A panic cancels the rest before it unwinds out of the scope.
            let trip = TripOnPanic(cancel);
            let out = job(i, &finished);
            std::mem::forget(trip);
            let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
            match out {
                Ok(value) => {
                    if results[i].set(value).is_err() {
                        unreachable!("job {i} ran twice");
                    }
                    q.unfinished -= 1;
                    for &d in &dependents[i] {
                        q.waiting_on[d] -= 1;
                        if q.waiting_on[d] == 0 {
                            q.ready.insert(d);
                        }
                    }
                }
                Err(halt) => {
                    q.stopped = true;
                    if let Halt::Failed(e) = halt {
                        let mut first = failure.lock().unwrap_or_else(|p| p.into_inner());
                        first.get_or_insert(e);
                    }
                }
            }
            drop(q);
            changed.notify_all();
        }
    };
    let workers = limit.get().min(n);
    std::thread::scope(|s| {
        for w in 0..workers {
            std::thread::Builder::new()
                .name(format!("kiln-stage-{w}"))
                // As much stack as the main thread has: steps walk trees recursively.
                .stack_size(8 << 20)
                .spawn_scoped(s, worker)
                .expect("spawn a stage worker thread");
        }
    });

    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(Halt::Failed(e));
    }
    let results: Option<Vec<T>> = results.into_iter().map(OnceLock::into_inner).collect();
    results.ok_or(Halt::Canceled)
}

/// The next job to start, waiting for one to become ready; `None` when there is nothing left
/// to start (all done, or stopped, or canceled).
fn next_job(queue: &Mutex<Queue>, changed: &Condvar, cancel: &Cancel) -> Option<usize> {
    let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if q.stopped || q.unfinished == 0 || cancel.is_canceled() {
            // Wake the others so they see it too.
            changed.notify_all();
            return None;
        }
        if let Some(i) = q.ready.pop_first() {
            return Some(i);
        }
        q = changed.wait(q).unwrap_or_else(|p| p.into_inner());
    }
}

/// Cancels the build when dropped, i.e. when a job unwinds.
struct TripOnPanic<'a>(&'a Cancel);

impl Drop for TripOnPanic<'_> {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Kahn's algorithm: every job must become ready at some point.
fn assert_acyclic(dependents: &[Vec<usize>], waiting_on: &[usize]) {
    let mut waiting = waiting_on.to_vec();
    let mut ready: Vec<usize> = (0..waiting.len()).filter(|&i| waiting[i] == 0).collect();
    let mut seen = 0;
    while let Some(i) = ready.pop() {
        seen += 1;
        for &d in &dependents[i] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.push(d);
            }
        }
    }
    assert_eq!(seen, waiting.len(), "the stage graph has a cycle");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, mpsc};
    use std::time::Duration;

    const TWO: NonZeroUsize = NonZeroUsize::new(2).unwrap();

    /// Waits until `n` parties arrived; false after a timeout (instead of hanging a test).
    struct Rendezvous {
        count: Mutex<usize>,
        arrived: Condvar,
        n: usize,
    }

    impl Rendezvous {
        fn new(n: usize) -> Self {
            Self {
                count: Mutex::new(0),
                arrived: Condvar::new(),
                n,
            }
        }

        fn meet(&self) -> bool {
            let mut c = self.count.lock().unwrap();
            *c += 1;
            self.arrived.notify_all();
            let (c, timeout) = self
                .arrived
                .wait_timeout_while(c, Duration::from_secs(10), |c| *c < self.n)
                .unwrap();
            drop(c);
            !timeout.timed_out()
        }
    }

    #[test]
    fn independent_jobs_overlap_and_dependents_see_their_results() {
        // a and b can only both finish if they run at the same time; c needs both.
        let meet = Rendezvous::new(2);
        let deps = vec![vec![], vec![], vec![0, 1]];
        let out = run_graph::<String, (), _>(&deps, TWO, &Cancel::new(), |i, done| match i {
            0 | 1 => {
                assert!(meet.meet(), "jobs 0 and 1 did not run at the same time");
                Ok(format!("job{i}"))
            }
            _ => Ok(format!("{}+{}", done.get(0).unwrap(), done.get(1).unwrap())),
        })
        .unwrap();
        assert_eq!(out, ["job0", "job1", "job0+job1"]);
    }

    #[test]
    fn a_job_starts_only_after_its_dependencies() {
        // A chain declared out of file order: 2 → 0 → 1 (1 needs 0, 0 needs 2).
        let order = Mutex::new(Vec::new());
        let deps = vec![vec![2], vec![0], vec![]];
        run_graph::<(), (), _>(&deps, TWO, &Cancel::new(), |i, done| {
            for &d in &deps[i] {
                assert!(done.get(d).is_some(), "job {i} started before job {d}");
            }
            order.lock().unwrap().push(i);
            Ok(())
        })
        .unwrap();
        assert_eq!(*order.lock().unwrap(), [2, 0, 1]);
    }

    #[test]
    fn no_more_jobs_run_at_once_than_the_limit() {
        for limit in [1, 2, 3] {
            let running = AtomicUsize::new(0);
            let peak = AtomicUsize::new(0);
            let deps = vec![vec![]; 8];
            let limit_nz = NonZeroUsize::new(limit).unwrap();
            run_graph::<(), (), _>(&deps, limit_nz, &Cancel::new(), |_, _| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
            let peak = peak.load(Ordering::SeqCst);
            assert!(
                peak <= limit,
                "{peak} jobs ran at once with a limit of {limit}"
            );
            assert!(peak >= 1);
        }
    }

    #[test]
    fn the_first_failure_cancels_running_jobs_and_starts_no_others() {
        // Job 1 waits (like a RUN) until the cancellation hook ends its wait; job 2 needs job 1
        // and must never start; job 0 fails once job 1 is waiting.
        let started = Mutex::new(Vec::new());
        let (waiting_tx, waiting_rx) = mpsc::channel::<()>();
        let waiting_rx = Mutex::new(waiting_rx);
        let cancel = Cancel::new();
        let deps = vec![vec![], vec![], vec![1]];
        let out = run_graph::<(), String, _>(&deps, TWO, &cancel, |i, _| {
            started.lock().unwrap().push(i);
            match i {
                0 => {
                    waiting_rx
                        .lock()
                        .unwrap()
                        .recv_timeout(Duration::from_secs(10))
                        .expect("job 1 started waiting");
                    Err(cancel.fail("job 0 broke".to_owned()))
                }
                1 => {
                    let (killed_tx, killed_rx) = mpsc::channel::<()>();
                    let _guard = cancel.on_cancel(move || killed_tx.send(()).unwrap());
                    waiting_tx.send(()).unwrap();
                    killed_rx
                        .recv_timeout(Duration::from_secs(10))
                        .expect("the failure of job 0 ran the hook");
                    // The "process" died of the cancellation: a failure that comes second.
                    Err(cancel.fail("job 1 was killed".to_owned()))
                }
                _ => Ok(()),
            }
        });
        match out {
            Err(Halt::Failed(e)) => assert_eq!(e, "job 0 broke"),
            other => panic!("expected job 0's failure, got {other:?}"),
        }
        let mut started = started.into_inner().unwrap();
        started.sort();
        assert_eq!(started, [0, 1], "job 2 must not start after the failure");
        assert!(cancel.is_canceled());
    }

    #[test]
    fn a_build_canceled_from_outside_ends_canceled() {
        let cancel = Cancel::new();
        let deps = vec![vec![], vec![0]];
        let out = run_graph::<(), (), _>(&deps, TWO, &cancel, |_, _| {
            cancel.cancel();
            Ok(())
        });
        assert!(matches!(out, Err(Halt::Canceled)), "{out:?}");
    }

    #[test]
    fn hooks_run_once_at_cancel_or_at_once_when_late_and_never_after_their_guard() {
        let cancel = Cancel::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = |runs: &Arc<AtomicUsize>| {
            let runs = Arc::clone(runs);
            move || {
                runs.fetch_add(1, Ordering::SeqCst);
            }
        };
        let dropped = cancel.on_cancel(counter(&runs));
        drop(dropped);
        let _kept = cancel.on_cancel(counter(&runs));
        assert!(!cancel.is_canceled());
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        assert!(cancel.cancel(), "the first cancel trips the token");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "only the live hook ran");
        assert!(!cancel.cancel(), "a second cancel is a no-op");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let _late = cancel.on_cancel(counter(&runs));
        assert_eq!(runs.load(Ordering::SeqCst), 2, "a late hook runs at once");
        assert!(matches!(cancel.fail(7), Halt::Canceled));
    }

    #[test]
    fn a_panicking_job_cancels_the_others_then_propagates() {
        let cancel = Cancel::new();
        let deps = vec![vec![], vec![]];
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_graph::<(), (), _>(&deps, TWO, &cancel, |i, _| {
                if i == 0 {
                    panic!("job 0 panicked");
                }
                // Job 1 ends when job 0's panic cancels the build.
                let (tx, rx) = mpsc::channel::<()>();
                let _guard = cancel.on_cancel(move || {
                    let _ = tx.send(());
                });
                rx.recv_timeout(Duration::from_secs(10))
                    .expect("the panic canceled the build");
                Err(Halt::Canceled)
            })
        }));
        assert!(result.is_err(), "the panic propagates");
        assert!(cancel.is_canceled());
    }

    #[test]
    fn kill_on_cancel_kills_the_process_a_step_waits_for() {
        let cancel = Cancel::new();
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .expect("sleep runs");
        let started = std::time::Instant::now();
        let status = std::thread::scope(|s| {
            let guard = cancel
                .kill_on_cancel(i32::try_from(child.id()).unwrap())
                .unwrap();
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                cancel.cancel();
            });
            let status = child.wait().unwrap();
            drop(guard);
            status
        });
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // Once canceled, a new registration kills at once.
        let mut late = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let guard = cancel
            .kill_on_cancel(i32::try_from(late.id()).unwrap())
            .unwrap();
        assert_eq!(late.wait().unwrap().signal(), Some(9));
        drop(guard);
    }

    #[test]
    #[should_panic(expected = "cycle")]
    fn a_cycle_is_refused() {
        let deps = vec![vec![1], vec![0]];
        let _ = run_graph::<(), (), _>(&deps, TWO, &Cancel::new(), |_, _| Ok(()));
    }

    #[test]
    fn no_jobs_is_an_empty_result() {
        let out = run_graph::<(), (), _>(&[], TWO, &Cancel::new(), |_, _| Ok(()));
        assert!(out.unwrap().is_empty());
    }
}
