//! Blob transfers a bounded number at a time: `workers` scoped threads take the next item until
//! none is left, one failed or the caller said stop; the first failure stops items not yet
//! started and is returned once the running ones end.
//!
//! Not responsible for: what a transfer does (see `download`, `upload`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::error::Result;

/// Run `task` on every item of `items`, at most `workers` at once.
pub fn for_each<T: Sync>(
    items: &[T],
    workers: usize,
    task: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    for_each_until(items, workers, &AtomicBool::new(false), task)
}

/// [`for_each`], also stopping (no new item starts) once `stop` is set, by the caller or by a
/// failure; a stop by the caller alone returns `Ok`.
pub fn for_each_until<T: Sync>(
    items: &[T],
    workers: usize,
    stop: &AtomicBool,
    task: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failed = stop;
    let first_error = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1).min(items.len()) {
            scope.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let Some(item) = items.get(next.fetch_add(1, Ordering::SeqCst)) else {
                        break;
                    };
                    if let Err(e) = task(item) {
                        failed.store(true, Ordering::SeqCst);
                        first_error
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A positive count from environment variable `name`, else `default`.
pub fn from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::error::RegistryError;

    #[test]
    fn every_item_runs_and_the_first_failure_is_returned() {
        let seen = Mutex::new(Vec::new());
        for_each(&[1, 2, 3, 4, 5], 2, |i| {
            seen.lock().unwrap().push(*i);
            Ok(())
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, [1, 2, 3, 4, 5]);
        let ran = AtomicUsize::new(0);
        let err = for_each(&[1, 2, 3, 4, 5, 6, 7, 8], 1, |i| {
            ran.fetch_add(1, Ordering::SeqCst);
            if *i == 3 {
                Err(RegistryError::ManifestTooLarge {
                    reference: format!("item {i}"),
                    limit: 0,
                })
            } else {
                Ok(())
            }
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("item 3"), "{err}");
        assert_eq!(
            ran.load(Ordering::SeqCst),
            3,
            "nothing starts after a failure"
        );
    }

    #[test]
    fn nothing_starts_once_the_caller_stops() {
        let stop = AtomicBool::new(false);
        let ran = AtomicUsize::new(0);
        for_each_until(&[1, 2, 3, 4, 5], 1, &stop, |i| {
            ran.fetch_add(1, Ordering::SeqCst);
            if *i == 2 {
                stop.store(true, Ordering::SeqCst);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 2);
    }
}
