//! Docker-like progress lines for pulls and pushes (`abc123def456: Pull complete`), on stderr.

use std::io::Write;

use crate::registry::{BlobKind, TransferEvent, TransferObserver};

/// Which verb the lines use.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    Pull,
    Push,
}

/// Renders transfer events as lines on stderr (nothing when quiet).
pub struct TransferLines {
    pub direction: Direction,
    pub quiet: bool,
}

impl TransferObserver for TransferLines {
    fn event(&self, event: TransferEvent) {
        if self.quiet {
            return;
        }
        let line = match (self.direction, event) {
            (Direction::Pull, TransferEvent::Resolving { reference }) => {
                format!(
                    "{}: Pulling from {}",
                    reference
                        .tag()
                        .map_or_else(|| reference.manifest_reference(), str::to_owned),
                    reference.familiar_repository()
                )
            }
            (Direction::Push, TransferEvent::Resolving { reference }) => {
                format!("The push refers to repository [{}]", reference.repository())
            }
            (
                Direction::Pull,
                TransferEvent::BlobExists {
                    digest,
                    kind: BlobKind::Layer,
                },
            ) => format!("{}: Already exists", digest.short()),
            (
                Direction::Push,
                TransferEvent::BlobExists {
                    digest,
                    kind: BlobKind::Layer,
                },
            ) => format!("{}: Layer already exists", digest.short()),
            (
                Direction::Pull,
                TransferEvent::BlobDone {
                    digest,
                    kind: BlobKind::Layer,
                },
            ) => format!("{}: Pull complete", digest.short()),
            (
                Direction::Push,
                TransferEvent::BlobDone {
                    digest,
                    kind: BlobKind::Layer,
                },
            ) => format!("{}: Pushed", digest.short()),
            _ => return,
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}
