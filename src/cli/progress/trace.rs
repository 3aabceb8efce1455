//! The state every display shares: the build's vertices (steps, the export, stray pulls) in the
//! order they appeared, each with its state, statuses and the tail of its output, as BuildKit's
//! `progressui` `trace` keeps them. [`Trace::apply`] turns one engine [`Event`] into the
//! [`Update`]s a line-based display prints.
//!
//! Not responsible for: formatting, timing of redraws, the clock (every call gets `at`, the time
//! since the display started).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::progress::{Event, OutputStream, StepId};

/// Lines of a running step's output the tty view shows (BuildKit shows a 6-line terminal).
pub const TAIL_LINES: usize = 6;

/// The error of a step that was running when the build ended without a failure event.
pub const UNREPORTED_FAILURE: &str = "did not complete successfully";

/// The name BuildKit gives the export vertex.
const EXPORT_NAME: &str = "exporting to image";

/// One vertex: a step, the export, or a pull that happened outside any step.
#[derive(Debug, Clone)]
pub struct Vertex {
    /// `#N` in plain output: the position in order of appearance, from 1.
    pub number: usize,
    /// `[2/5] RUN make`, `exporting to image`.
    pub name: String,
    /// A stable identity for JSON consumers (`sha256:…` over the name).
    pub digest: String,
    pub kind: Kind,
    /// When the vertex appeared.
    pub started: Duration,
    pub state: State,
    pub statuses: Vec<Status>,
    /// The last [`TAIL_LINES`] lines of output.
    pub tail: VecDeque<LogLine>,
}

/// What a vertex stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Step,
    Export,
    Pull,
}

/// Where a vertex is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Running,
    /// Completed at `at`, after running for `elapsed` (the engine's measure for steps).
    Done {
        at: Duration,
        elapsed: Duration,
    },
    Cached {
        at: Duration,
    },
    Failed {
        at: Duration,
        elapsed: Duration,
        error: String,
    },
    /// Still running when the build ended (another step failed): BuildKit's `CANCELED`.
    Canceled {
        at: Duration,
    },
}

impl State {
    /// When the vertex completed, if it did.
    pub fn completed_at(&self) -> Option<Duration> {
        match self {
            State::Running => None,
            State::Done { at, .. }
            | State::Cached { at }
            | State::Failed { at, .. }
            | State::Canceled { at } => Some(*at),
        }
    }
}

/// A sub-task of a vertex (`resolve docker.io/library/alpine`, `naming to app:1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: String,
    pub started: Duration,
    pub completed: Option<Duration>,
}

/// A line of a step's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Since the step started, as the engine measured it.
    pub elapsed: Duration,
    /// When the display received it.
    pub at: Duration,
    pub stream: OutputStream,
    pub text: String,
}

/// What changed, in the order a line-based display prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Vertex `.0` appeared.
    Started(usize),
    /// Vertex `vertex` printed `line`.
    Log { vertex: usize, line: LogLine },
    /// Status `status` of `vertex` started or completed.
    Status { vertex: usize, status: usize },
    /// Vertex `.0` completed (done, cached, failed or canceled).
    Completed(usize),
}

/// All vertices of a build.
#[derive(Debug, Default)]
pub struct Trace {
    vertices: Vec<Vertex>,
    by_step: HashMap<(String, usize), usize>,
    /// When the last step completed: where the export starts.
    last_step_end: Option<Duration>,
    /// The largest `total` seen: the number of steps in the build.
    total_steps: usize,
    /// The time of the latest event.
    last_event: Duration,
}

impl Trace {
    pub fn vertices(&self) -> &[Vertex] {
        &self.vertices
    }

    pub fn vertex(&self, i: usize) -> &Vertex {
        &self.vertices[i]
    }

    /// Steps known to the build (from the events' `total`) and how many of them completed.
    pub fn step_counts(&self) -> (usize, usize) {
        let seen = self
            .vertices
            .iter()
            .filter(|v| v.kind == Kind::Step)
            .count();
        let completed = self
            .vertices
            .iter()
            .filter(|v| v.kind == Kind::Step && v.state != State::Running)
            .count();
        (self.total_steps.max(seen), completed)
    }

    /// Whether a step is running (its timer advances).
    pub fn step_running(&self) -> bool {
        self.vertices
            .iter()
            .any(|v| v.kind == Kind::Step && v.state == State::Running)
    }

    /// When the latest event arrived.
    pub fn last_event(&self) -> Duration {
        self.last_event
    }

    /// Take in one event received at `at`.
    pub fn apply(&mut self, event: &Event, at: Duration) -> Vec<Update> {
        self.last_event = self.last_event.max(at);
        let mut out = Vec::new();
        match event {
            Event::StepStarted { step, text } => {
                self.total_steps = self.total_steps.max(step.total);
                let i = self.step_vertex(step, Some(text), at, &mut out);
                let v = &mut self.vertices[i];
                if v.state != State::Running {
                    // Run again (a retry): a fresh start.
                    v.state = State::Running;
                    v.started = at;
                    out.push(Update::Started(i));
                }
            }
            Event::StepFinished { step, elapsed } => {
                let i = self.step_vertex(step, None, at, &mut out);
                self.complete(
                    i,
                    State::Done {
                        at,
                        elapsed: *elapsed,
                    },
                    &mut out,
                );
                self.last_step_end = Some(at);
            }
            Event::StepCached { step, text } => {
                self.total_steps = self.total_steps.max(step.total);
                let i = self.step_vertex(step, Some(text), at, &mut out);
                self.complete(i, State::Cached { at }, &mut out);
                self.last_step_end = Some(at);
            }
            Event::StepFailed {
                step,
                elapsed,
                error,
            } => {
                let i = self.step_vertex(step, None, at, &mut out);
                self.complete(
                    i,
                    State::Failed {
                        at,
                        elapsed: *elapsed,
                        error: error.clone(),
                    },
                    &mut out,
                );
            }
            Event::StepOutput {
                step,
                stream,
                elapsed,
                line,
            } => {
                let i = self.step_vertex(step, None, at, &mut out);
                let line = LogLine {
                    elapsed: *elapsed,
                    at,
                    stream: *stream,
                    text: line.clone(),
                };
                let tail = &mut self.vertices[i].tail;
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
                out.push(Update::Log { vertex: i, line });
            }
            Event::CacheMiss { step, key, reason } => {
                // Shown in the step's log, as BuildKit's debug output does.
                let line = Event::StepOutput {
                    step: step.clone(),
                    stream: crate::progress::OutputStream::Stderr,
                    elapsed: Duration::ZERO,
                    line: format!("cache miss ({key}): {reason}"),
                };
                out = self.apply(&line, at);
            }
            Event::Pulling { step, reference } => {
                // A pull happens inside a step (a FROM, a `--from`): a status of that step (of
                // the latest running one when the event names none); outside any step, a
                // vertex of its own.
                let id = format!("resolve {reference}");
                let vertex = match step {
                    Some(step) => Some(self.step_vertex(step, None, at, &mut out)),
                    None => self.latest_running_step(),
                };
                match vertex {
                    Some(i) => self.add_status(i, id, at, false, &mut out),
                    None => {
                        let i = self.push_vertex(
                            format!("[internal] load metadata for {reference}"),
                            Kind::Pull,
                            at,
                            &mut out,
                        );
                        self.add_status(i, id, at, true, &mut out);
                        self.complete(
                            i,
                            State::Done {
                                at,
                                elapsed: Duration::ZERO,
                            },
                            &mut out,
                        );
                    }
                }
            }
            Event::Exported { image_id, manifest } => {
                let start = self.last_step_end.unwrap_or(at).min(at);
                let i = self.push_vertex(EXPORT_NAME.to_owned(), Kind::Export, start, &mut out);
                self.add_status(
                    i,
                    format!("exporting manifest {manifest}"),
                    at,
                    true,
                    &mut out,
                );
                self.add_status(i, format!("writing image {image_id}"), at, true, &mut out);
                self.complete(
                    i,
                    State::Done {
                        at,
                        elapsed: at.saturating_sub(start),
                    },
                    &mut out,
                );
            }
            Event::Tagged { name } => {
                let export = self.vertices.iter().rposition(|v| v.kind == Kind::Export);
                let i = match export {
                    Some(i) => i,
                    None => self.push_vertex(EXPORT_NAME.to_owned(), Kind::Export, at, &mut out),
                };
                self.add_status(i, format!("naming to {name}"), at, true, &mut out);
                if export.is_none() {
                    let done = State::Done {
                        at,
                        elapsed: Duration::ZERO,
                    };
                    self.complete(i, done, &mut out);
                }
            }
        }
        out
    }

    /// The build ended: steps still running were canceled because another one failed. When
    /// no failure was reported, they are the ones that failed (the build stopped with them).
    pub fn finish(&mut self, at: Duration) -> Vec<Update> {
        self.last_event = self.last_event.max(at);
        let failure_reported = self
            .vertices
            .iter()
            .any(|v| matches!(v.state, State::Failed { .. }));
        let mut out = Vec::new();
        for i in 0..self.vertices.len() {
            if self.vertices[i].state != State::Running {
                continue;
            }
            let state = if failure_reported {
                State::Canceled { at }
            } else {
                State::Failed {
                    at,
                    elapsed: at.saturating_sub(self.vertices[i].started),
                    error: UNREPORTED_FAILURE.to_owned(),
                }
            };
            self.complete(i, state, &mut out);
        }
        out
    }

    fn latest_running_step(&self) -> Option<usize> {
        self.vertices
            .iter()
            .rposition(|v| v.kind == Kind::Step && v.state == State::Running)
    }

    /// The vertex of `step`, created (and reported started) on first sight.
    fn step_vertex(
        &mut self,
        step: &StepId,
        text: Option<&str>,
        at: Duration,
        out: &mut Vec<Update>,
    ) -> usize {
        let key = (step.stage.clone(), step.index);
        if let Some(&i) = self.by_step.get(&key) {
            return i;
        }
        self.total_steps = self.total_steps.max(step.total);
        let name = step.vertex_name(text.unwrap_or_default());
        let name = name.trim_end().to_owned();
        let i = self.push_vertex(name, Kind::Step, at, out);
        self.by_step.insert(key, i);
        i
    }

    fn push_vertex(
        &mut self,
        name: String,
        kind: Kind,
        at: Duration,
        out: &mut Vec<Update>,
    ) -> usize {
        let i = self.vertices.len();
        self.vertices.push(Vertex {
            number: i + 1,
            digest: vertex_digest(&name, i),
            name,
            kind,
            started: at,
            state: State::Running,
            statuses: Vec::new(),
            tail: VecDeque::new(),
        });
        out.push(Update::Started(i));
        i
    }

    fn add_status(
        &mut self,
        vertex: usize,
        id: String,
        at: Duration,
        completed: bool,
        out: &mut Vec<Update>,
    ) {
        let statuses = &mut self.vertices[vertex].statuses;
        statuses.push(Status {
            id,
            started: at,
            completed: completed.then_some(at),
        });
        out.push(Update::Status {
            vertex,
            status: statuses.len() - 1,
        });
    }

    /// Complete vertex `i` (its open statuses first), unless it already completed.
    fn complete(&mut self, i: usize, state: State, out: &mut Vec<Update>) {
        let v = &mut self.vertices[i];
        if v.state != State::Running {
            return;
        }
        let at = state.completed_at().unwrap_or_default();
        for (s, status) in v.statuses.iter_mut().enumerate() {
            if status.completed.is_none() {
                status.completed = Some(at);
                out.push(Update::Status {
                    vertex: i,
                    status: s,
                });
            }
        }
        v.state = state;
        out.push(Update::Completed(i));
    }
}

/// A vertex's identity for JSON consumers: BuildKit's is the digest of the op definition; ours is
/// over the vertex's name and position, which is unique within a build and stable across runs
/// of the same Dockerfile.
fn vertex_digest(name: &str, position: usize) -> String {
    let mut h = Sha256::new();
    h.update(b"kiln.progress.vertex.v1\0");
    h.update(position.to_string().as_bytes());
    h.update(b"\0");
    h.update(name.as_bytes());
    format!("sha256:{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(index: usize) -> StepId {
        StepId {
            stage: String::new(),
            index,
            total: 3,
        }
    }

    #[test]
    fn interleaved_steps_keep_their_own_vertices_and_tails() {
        let mut t = Trace::default();
        let ms = Duration::from_millis;
        t.apply(
            &Event::StepStarted {
                step: step(1),
                text: "RUN a".into(),
            },
            ms(0),
        );
        t.apply(
            &Event::StepStarted {
                step: step(2),
                text: "RUN b".into(),
            },
            ms(1),
        );
        for n in 0..10 {
            for s in [1, 2] {
                t.apply(
                    &Event::StepOutput {
                        step: step(s),
                        stream: OutputStream::Stdout,
                        elapsed: ms(n),
                        line: format!("{s}-{n}"),
                    },
                    ms(2 + n),
                );
            }
        }
        let v = t.vertices();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name, "[1/3] RUN a");
        assert_eq!(v[0].tail.len(), TAIL_LINES);
        assert_eq!(v[0].tail.back().unwrap().text, "1-9");
        assert_eq!(v[1].tail.front().unwrap().text, "2-4");
        assert_eq!(t.step_counts(), (3, 0));
        t.apply(
            &Event::StepFailed {
                step: step(1),
                elapsed: ms(40),
                error: "exit code: 1".into(),
            },
            ms(40),
        );
        let updates = t.finish(ms(50));
        assert_eq!(updates, vec![Update::Completed(1)]);
        assert_eq!(t.vertex(1).state, State::Canceled { at: ms(50) });
    }

    #[test]
    fn steps_running_at_the_end_failed_when_no_failure_was_reported() {
        let mut t = Trace::default();
        t.apply(
            &Event::StepStarted {
                step: step(1),
                text: "RUN a".into(),
            },
            Duration::ZERO,
        );
        assert_eq!(t.finish(Duration::from_secs(1)), vec![Update::Completed(0)]);
        assert_eq!(
            t.vertex(0).state,
            State::Failed {
                at: Duration::from_secs(1),
                elapsed: Duration::from_secs(1),
                error: UNREPORTED_FAILURE.into()
            }
        );
    }

    #[test]
    fn digests_are_stable_and_distinct() {
        assert_eq!(
            vertex_digest("[1/2] FROM a", 0),
            vertex_digest("[1/2] FROM a", 0)
        );
        assert_ne!(
            vertex_digest("[1/2] FROM a", 0),
            vertex_digest("[1/2] FROM a", 1)
        );
        assert_eq!(vertex_digest("x", 0).len(), 71);
    }
}
