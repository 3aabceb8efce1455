//! Build progress as an event stream (STYLE.md habit 12): the engine reports through
//! [`Reporter`]; the CLI decides how to render it (`src/cli/progress.rs`: BuildKit's plain, tty
//! and rawjson displays).
//!
//! Events carry no wall-clock time: a reporter is called inline, so it stamps each event when it
//! receives it; durations the engine measured itself (a step's `elapsed`) travel in the event.
//! Steps may run concurrently, so events of several steps can interleave; a step is identified
//! by its [`StepId`] in every event about it.
//!
//! Not responsible for: rendering, choosing a display, timestamps.

use std::time::Duration;

/// Identifies a step in a build: `[stage] index/total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StepId {
    /// The stage's name (`stage-N` when unnamed); empty in a one-stage build.
    pub stage: String,
    /// 1-based position within the build's steps.
    pub index: usize,
    /// The number of steps in the build.
    pub total: usize,
}

impl StepId {
    /// BuildKit's vertex name for the step: `[2/5] RUN make` in a one-stage build,
    /// `[builder 2/5] RUN make` otherwise; the index is padded to the width of the total
    /// (`[ 2/10]`), as `dockerfile2llb`'s `prefixCommand` does.
    pub fn vertex_name(&self, text: &str) -> String {
        let width = self.total.max(1).to_string().len();
        let stage = if self.stage.is_empty() {
            String::new()
        } else {
            format!("{} ", self.stage)
        };
        format!("[{stage}{:>width$}/{}] {text}", self.index, self.total)
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A step began running; `text` is its instruction as written (`RUN make`).
    StepStarted {
        step: StepId,
        text: String,
    },
    /// A step that [`Event::StepStarted`] announced completed successfully.
    StepFinished {
        step: StepId,
        elapsed: Duration,
    },
    /// A step's result came from the build cache: nothing ran. Not preceded by
    /// [`Event::StepStarted`] (BuildKit shows such a vertex as started and completed at once).
    StepCached {
        step: StepId,
        text: String,
    },
    /// A step that [`Event::StepStarted`] announced failed; `error` is the one-line cause (the
    /// CLI renders the full, located error after the build).
    StepFailed {
        step: StepId,
        elapsed: Duration,
        error: String,
    },
    /// A line a step's process wrote (RUN), `elapsed` after the step started.
    StepOutput {
        step: StepId,
        stream: OutputStream,
        elapsed: Duration,
        line: String,
    },
    /// `--debug-cache`: a step's key was not found in the cache, and why.
    CacheMiss {
        step: StepId,
        key: String,
        reason: String,
    },
    /// A base image is being fetched from a registry, for `step` (the FROM, or the step whose
    /// `--from`/`--mount from=` names the image) when there is one.
    Pulling {
        step: Option<StepId>,
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
    /// File descriptor 1 (BuildKit's log stream 1).
    Stdout,
    /// File descriptor 2 (BuildKit's log stream 2).
    Stderr,
}

impl OutputStream {
    /// The stream's file descriptor number, as BuildKit's `VertexLog.stream` carries it.
    pub fn fd(self) -> u8 {
        match self {
            OutputStream::Stdout => 1,
            OutputStream::Stderr => 2,
        }
    }
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
