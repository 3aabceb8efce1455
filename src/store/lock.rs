//! Advisory file locks (`flock`) on the store's lock files, released when the guard drops.
//!
//! Locks are taken in the order of [`LockName`] (content before images) so two kiln processes
//! can never deadlock. Not responsible for: deciding what a lock protects (see `layout`).

use std::fs::File;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

use super::layout::{Layout, LockName};
use super::{Result, StoreError};

/// Exclusive or shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// A held lock; dropping it releases the lock (closing the descriptor drops the flock).
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
    name: LockName,
}

impl LockGuard {
    pub fn name(&self) -> LockName {
        self.name
    }
}

/// Block until the named lock is held in `mode`.
pub fn acquire(layout: &Layout, name: LockName, mode: LockMode) -> Result<LockGuard> {
    let path = layout.lock(name);
    let file = open_lock_file(&path)?;
    let op = match mode {
        LockMode::Shared => FlockOperation::LockShared,
        LockMode::Exclusive => FlockOperation::LockExclusive,
    };
    flock(&file, op).map_err(|e| StoreError::Lock {
        path: path.clone(),
        source: e.into(),
    })?;
    Ok(LockGuard { _file: file, name })
}

fn open_lock_file(path: &Path) -> Result<File> {
    let file = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    Ok(file.into_parts().0)
}
