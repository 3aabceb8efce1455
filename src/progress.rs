//! Build progress as an event stream (STYLE.md habit 12): the engine reports through
//! [`Reporter`]; the CLI decides how to render (plain lines now; tty and rawjson later).
//!
//! Not responsible for: rendering.

use std::time::Duration;

/// Identifies a step in a build: `[stage] index/total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepId {
    /// The stage's name (`stage-N` when unnamed); empty in a one-stage build.
    pub stage: String,
    /// 1-based position within the build's steps.
    pub index: usize,
    pub total: usize,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    StepStarted {
        step: StepId,
        text: String,
    },
    StepFinished {
        step: StepId,
        elapsed: Duration,
    },
    /// A line a step's process wrote (RUN), `elapsed` after the step started.
    StepOutput {
        step: StepId,
        stream: OutputStream,
        elapsed: Duration,
        line: String,
    },
    /// A base image is being fetched from a registry.
    Pulling {
        reference: String,
    },
    /// The image was exported: config digest (image ID) and manifest digest.
    Exported {
        image_id: String,
        manifest: String,
    },
    Tagged {
        name: String,
    },
}

/// Which stream of a step's process a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Receives events. Implementations must be cheap; the engine calls them inline.
pub trait Reporter: Sync {
    fn event(&self, event: Event);
}

/// Discards events (library callers, tests).
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: Event) {}
}
