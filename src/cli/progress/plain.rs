//! `--progress=plain`: BuildKit's line-based display for CI logs (`progressui/printer.go`'s
//! `textMux`). Every line starts with the vertex number:
//!
//! ```text
//! #2 [2/3] RUN make
//! #2 0.105 cc -o app main.c
//! #2 DONE 1.2s
//!
//! #3 [3/3] COPY app /bin/
//! #3 CACHED
//! ```
//!
//! A block starts with the vertex's name; when another vertex's events interleave (steps running
//! in parallel), the open block is closed with `#N ...` and the name is printed again when the
//! vertex continues, as BuildKit does. Output lines carry the time since the step started, with
//! 3 decimals under 10 s, 2 under 100 s, else 1. The export's `DONE` waits until the build ends
//! so that the `naming to` lines of tags stay in its block.
//!
//! Not responsible for: the located error after a failed build (the CLI prints it; it carries
//! the tail of the failed step's output, so BuildKit's `------ > step: ------` log block is not
//! repeated here).

use std::fmt::Write as _;
use std::time::Duration;

use super::trace::{Kind, State, Trace, Update};
use crate::progress::Event;

/// The plain display's state.
#[derive(Debug, Default)]
pub struct Plain {
    trace: Trace,
    /// The vertex whose block is open (its name printed last, not completed).
    current: Option<usize>,
    /// Whether a block was printed (blocks are separated by an empty line).
    not_first: bool,
    /// The export vertex, whose `DONE` is printed when the build ends.
    export_pending: Option<usize>,
}

impl Plain {
    /// The text for one event received at `at`.
    pub fn event(&mut self, event: &Event, at: Duration) -> String {
        let updates = self.trace.apply(event, at);
        self.print(&updates)
    }

    /// The text when the build ends at `at` (canceled steps, the export's `DONE`).
    pub fn finish(&mut self, at: Duration) -> String {
        let mut out = String::new();
        if let Some(i) = self.export_pending.take() {
            self.header(i, &mut out);
            self.completion(i, &mut out);
        }
        let updates = self.trace.finish(at);
        out + &self.print(&updates)
    }

    fn print(&mut self, updates: &[Update]) -> String {
        let mut out = String::new();
        for u in updates {
            match u {
                Update::Started(i) => self.header(*i, &mut out),
                Update::Log { vertex, line } => {
                    self.header(*vertex, &mut out);
                    let n = self.trace.vertex(*vertex).number;
                    let _ = writeln!(out, "#{n} {} {}", log_time(line.elapsed), line.text);
                }
                Update::Status { vertex, status } => {
                    self.header(*vertex, &mut out);
                    let v = self.trace.vertex(*vertex);
                    let s = &v.statuses[*status];
                    let _ = match s.completed {
                        Some(done) => {
                            let took = done.saturating_sub(s.started).as_secs_f64();
                            let tm = if took > 0.01 {
                                format!(" {took:.1}s")
                            } else {
                                String::new()
                            };
                            writeln!(out, "#{} {}{tm} done", v.number, s.id)
                        }
                        None => writeln!(out, "#{} {}", v.number, s.id),
                    };
                }
                Update::Completed(i) => {
                    if self.trace.vertex(*i).kind == Kind::Export {
                        self.export_pending = Some(*i);
                        continue;
                    }
                    self.header(*i, &mut out);
                    self.completion(*i, &mut out);
                }
            }
        }
        out
    }

    /// `#N DONE 0.1s`, `#N CACHED`, `#N ERROR: …`, `#N CANCELED`; closes the block.
    fn completion(&mut self, i: usize, out: &mut String) {
        let v = self.trace.vertex(i);
        let n = v.number;
        let _ = match &v.state {
            State::Running => Ok(()),
            State::Done { elapsed, .. } => {
                writeln!(out, "#{n} DONE {:.1}s", elapsed.as_secs_f64())
            }
            State::Cached { .. } => writeln!(out, "#{n} CACHED"),
            State::Failed { error, .. } => {
                writeln!(
                    out,
                    "#{n} ERROR: {}",
                    error.lines().next().unwrap_or_default()
                )
            }
            State::Canceled { .. } => writeln!(out, "#{n} CANCELED"),
        };
        self.current = None;
    }

    /// Open vertex `i`'s block unless it is the open one.
    fn header(&mut self, i: usize, out: &mut String) {
        if self.current == Some(i) {
            return;
        }
        if let Some(c) = self.current {
            let _ = writeln!(out, "#{} ...", self.trace.vertex(c).number);
        }
        if self.not_first {
            out.push('\n');
        }
        self.not_first = true;
        let v = self.trace.vertex(i);
        let _ = writeln!(out, "#{} {}", v.number, v.name);
        self.current = Some(i);
    }
}

/// A log line's time since its step started: 3 decimals under 10 s, 2 under 100 s, else 1
/// (BuildKit's `trace.update`).
fn log_time(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.3}")
    } else if s < 100.0 {
        format!("{s:.2}")
    } else {
        format!("{s:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::{OutputStream, StepId};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn step(stage: &str, index: usize) -> StepId {
        StepId {
            stage: stage.into(),
            index,
            total: 4,
        }
    }

    fn output(step: StepId, elapsed: u64, line: &str) -> Event {
        Event::StepOutput {
            step,
            stream: OutputStream::Stdout,
            elapsed: ms(elapsed),
            line: line.into(),
        }
    }

    fn render(events: &[(u64, Event)], end: u64) -> String {
        let mut p = Plain::default();
        let mut out = String::new();
        for (at, e) in events {
            out += &p.event(e, ms(*at));
        }
        out + &p.finish(ms(end))
    }

    #[test]
    fn a_sequential_build() {
        let s = |i| step("", i);
        let out = render(
            &[
                (
                    0,
                    Event::StepStarted {
                        step: s(1),
                        text: "FROM busybox".into(),
                    },
                ),
                (
                    1,
                    Event::Pulling {
                        step: Some(s(1)),
                        reference: "docker.io/library/busybox:latest".into(),
                    },
                ),
                (
                    400,
                    Event::StepFinished {
                        step: s(1),
                        elapsed: ms(400),
                    },
                ),
                (
                    400,
                    Event::StepCached {
                        step: s(2),
                        text: "COPY a /a".into(),
                    },
                ),
                (
                    401,
                    Event::StepStarted {
                        step: s(3),
                        text: "RUN make".into(),
                    },
                ),
                (450, output(s(3), 49, "cc main.c")),
                (12_500, output(s(3), 12_099, "ld app")),
                (
                    12_600,
                    Event::StepFinished {
                        step: s(3),
                        elapsed: ms(12_199),
                    },
                ),
                (
                    12_601,
                    Event::StepStarted {
                        step: s(4),
                        text: "WORKDIR /app".into(),
                    },
                ),
                (
                    12_700,
                    Event::StepFinished {
                        step: s(4),
                        elapsed: ms(99),
                    },
                ),
                (
                    12_760,
                    Event::Exported {
                        image_id: "sha256:11".into(),
                        manifest: "sha256:22".into(),
                    },
                ),
                (
                    12_761,
                    Event::Tagged {
                        name: "app:1".into(),
                    },
                ),
            ],
            12_800,
        );
        assert_eq!(
            out,
            "\
#1 [1/4] FROM busybox
#1 resolve docker.io/library/busybox:latest
#1 resolve docker.io/library/busybox:latest 0.4s done
#1 DONE 0.4s

#2 [2/4] COPY a /a
#2 CACHED

#3 [3/4] RUN make
#3 0.049 cc main.c
#3 12.10 ld app
#3 DONE 12.2s

#4 [4/4] WORKDIR /app
#4 DONE 0.1s

#5 exporting to image
#5 exporting manifest sha256:22 done
#5 writing image sha256:11 done
#5 naming to app:1 done
#5 DONE 0.1s
"
        );
    }

    #[test]
    fn parallel_steps_reopen_their_blocks_and_a_failure_cancels_the_rest() {
        let a = step("a", 1);
        let b = step("b", 2);
        let c = step("c", 3);
        let out = render(
            &[
                (
                    0,
                    Event::StepStarted {
                        step: a.clone(),
                        text: "RUN x".into(),
                    },
                ),
                (
                    1,
                    Event::StepStarted {
                        step: b.clone(),
                        text: "RUN y".into(),
                    },
                ),
                (5, output(a.clone(), 5, "from a")),
                (6, output(b.clone(), 5, "from b")),
                (
                    150,
                    Event::StepFinished {
                        step: a,
                        elapsed: ms(150),
                    },
                ),
                (
                    160,
                    Event::StepStarted {
                        step: c,
                        text: "COPY --from=a / /".into(),
                    },
                ),
                (
                    170,
                    Event::StepFailed {
                        step: b,
                        elapsed: ms(169),
                        error: "process \"/bin/sh -c y\" did not complete successfully: exit code: 1\nlast 1 lines of output:\n  | from b".into(),
                    },
                ),
            ],
            171,
        );
        assert_eq!(
            out,
            "\
#1 [a 1/4] RUN x
#1 ...

#2 [b 2/4] RUN y
#2 ...

#1 [a 1/4] RUN x
#1 0.005 from a
#1 ...

#2 [b 2/4] RUN y
#2 0.005 from b
#2 ...

#1 [a 1/4] RUN x
#1 DONE 0.1s

#3 [c 3/4] COPY --from=a / /
#3 ...

#2 [b 2/4] RUN y
#2 ERROR: process \"/bin/sh -c y\" did not complete successfully: exit code: 1

#3 [c 3/4] COPY --from=a / /
#3 CANCELED
"
        );
    }

    /// Two stages start from images at once: each pull is a status of its own FROM, not of
    /// whichever step started last.
    #[test]
    fn a_pull_is_shown_under_the_step_that_pulls() {
        let a = step("a", 1);
        let b = step("b", 2);
        let started = |step: &StepId, text: &str| Event::StepStarted {
            step: step.clone(),
            text: text.into(),
        };
        let pulling = |step: &StepId, image: &str| Event::Pulling {
            step: Some(step.clone()),
            reference: image.into(),
        };
        let finished = |step: &StepId, at: u64| Event::StepFinished {
            step: step.clone(),
            elapsed: ms(at),
        };
        let out = render(
            &[
                (0, started(&a, "FROM x")),
                (1, started(&b, "FROM y")),
                (2, pulling(&a, "docker.io/library/x:latest")),
                (3, pulling(&b, "docker.io/library/y:latest")),
                (100, finished(&a, 100)),
                (200, finished(&b, 199)),
            ],
            201,
        );
        let a_block = out
            .split("\n\n")
            .find(|b| b.contains("DONE") && b.contains("[a 1/4]"));
        let a_block = a_block.unwrap_or_else(|| panic!("{out}"));
        assert!(
            a_block.contains("resolve docker.io/library/x:latest"),
            "{out}"
        );
        assert!(!a_block.contains("library/y"), "{out}");
        let b_block = out
            .split("\n\n")
            .find(|b| b.contains("DONE") && b.contains("[b 2/4]"));
        let b_block = b_block.unwrap_or_else(|| panic!("{out}"));
        assert!(
            b_block.contains("resolve docker.io/library/y:latest"),
            "{out}"
        );
    }

    #[test]
    fn a_step_still_running_without_a_failure_event_is_the_failed_one() {
        let out = render(
            &[(
                0,
                Event::StepStarted {
                    step: step("", 1),
                    text: "RUN exit 1".into(),
                },
            )],
            10,
        );
        assert_eq!(
            out,
            "#1 [1/4] RUN exit 1\n#1 ERROR: did not complete successfully\n"
        );
    }

    #[test]
    fn log_time_precision_follows_buildkit() {
        assert_eq!(log_time(ms(123)), "0.123");
        assert_eq!(log_time(ms(12_345)), "12.35");
        assert_eq!(log_time(ms(123_456)), "123.5");
    }
}
