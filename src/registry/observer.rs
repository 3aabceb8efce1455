//! Progress of pulls and pushes as a stream of events, so the CLI can render Docker-like lines
//! (`abc123def456: Pushed`, `latest: digest: sha256:... size: 527`) or JSON.
//!
//! Not responsible for: rendering (the CLI does that). Observers must be `Sync`: transfers of
//! several blobs may run on several threads.

use std::io::{self, Read};

use snapshotter::Digest;

use crate::image::ImageRef;

/// What a blob is to the image being transferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    Config,
    Layer,
}

/// One step of a pull or push.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferEvent {
    /// About to contact the registry for `reference` (pull source or push destination).
    Resolving { reference: ImageRef },
    /// Pull: `reference` resolved to `digest` (an index or a manifest: the digest Docker shows
    /// as `Digest:`), and `manifest` is the image manifest that will be pulled (selected for the
    /// platform when `digest` is an index, else equal to it).
    Resolved {
        reference: ImageRef,
        digest: Digest,
        manifest: Digest,
    },
    /// The blob is already where it is going (the local store on pull, the registry on push).
    BlobExists { digest: Digest, kind: BlobKind },
    /// The blob's transfer starts.
    BlobStarted {
        digest: Digest,
        size: u64,
        kind: BlobKind,
    },
    /// Bytes of the blob transferred so far (reported about every [`PROGRESS_STEP`] bytes).
    BlobProgress {
        digest: Digest,
        transferred: u64,
        size: u64,
    },
    /// The blob was transferred and verified.
    BlobDone { digest: Digest, kind: BlobKind },
    /// Push: the manifest was stored in the registry under `reference`.
    ManifestPushed {
        reference: ImageRef,
        digest: Digest,
        size: u64,
    },
}

/// Receives [`TransferEvent`]s.
pub trait TransferObserver: Sync {
    fn event(&self, event: TransferEvent);
}

/// Ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl TransferObserver for NoopObserver {
    fn event(&self, _event: TransferEvent) {}
}

/// Bytes between two [`TransferEvent::BlobProgress`] events of one blob.
pub const PROGRESS_STEP: u64 = 1024 * 1024;

/// A reader that reports [`TransferEvent::BlobProgress`] as bytes pass through.
pub(crate) struct ProgressReader<'a, R> {
    inner: R,
    observer: &'a dyn TransferObserver,
    digest: Digest,
    size: u64,
    transferred: u64,
    reported: u64,
}

impl<'a, R: Read> ProgressReader<'a, R> {
    pub(crate) fn new(
        inner: R,
        observer: &'a dyn TransferObserver,
        digest: Digest,
        size: u64,
    ) -> Self {
        Self {
            inner,
            observer,
            digest,
            size,
            transferred: 0,
            reported: 0,
        }
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.transferred += n as u64;
        let finished = n == 0 || self.transferred >= self.size;
        if self.transferred > self.reported
            && (self.transferred - self.reported >= PROGRESS_STEP || finished)
        {
            self.reported = self.transferred;
            self.observer.event(TransferEvent::BlobProgress {
                digest: self.digest,
                transferred: self.transferred,
                size: self.size,
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<TransferEvent>>);

    impl TransferObserver for Recorder {
        fn event(&self, event: TransferEvent) {
            self.0.lock().unwrap().push(event);
        }
    }

    #[test]
    fn progress_is_reported_in_steps_and_at_the_end() {
        let data = vec![7u8; (PROGRESS_STEP * 2 + 10) as usize];
        let rec = Recorder::default();
        let digest = Digest::of(&data);
        let mut reader = ProgressReader::new(&data[..], &rec, digest, data.len() as u64);
        io::copy(&mut reader, &mut io::sink()).unwrap();
        let events = rec.0.into_inner().unwrap();
        let transferred: Vec<u64> = events
            .iter()
            .map(|e| match e {
                TransferEvent::BlobProgress { transferred, .. } => *transferred,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert!(
            transferred.len() >= 3 && transferred.len() <= 4,
            "{transferred:?}"
        );
        assert_eq!(transferred.last(), Some(&(data.len() as u64)));
        assert!(transferred.windows(2).all(|w| w[0] < w[1]));
    }
}
