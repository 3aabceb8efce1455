//! `--progress=rawjson`: one JSON object per line per change, in the shape of BuildKit's
//! `client.SolveStatus` as buildx prints it (`progressui`'s `rawJSONDisplay` encodes each status
//! update; the types are in `client/graph.go`):
//!
//! ```text
//! {"vertexes":[{"digest":"sha256:…","name":"[2/3] RUN make","started":"2024-…Z"}]}
//! {"logs":[{"vertex":"sha256:…","stream":1,"data":"Y2MgbWFpbi5jCg==","timestamp":"2024-…Z"}]}
//! {"vertexes":[{"digest":"sha256:…","name":"[2/3] RUN make","started":"…","completed":"…"}]}
//! {"statuses":[{"id":"naming to app:1","vertex":"sha256:…","current":0,"timestamp":"…","started":"…","completed":"…"}]}
//! ```
//!
//! Times are RFC 3339 with nanoseconds in UTC (Go's `time.Time`); `data` is the base64 of the
//! line with its newline (Go's `[]byte`); a failed vertex has `error`, and a vertex still running
//! when the build ended has BuildKit's cancellation error, `context canceled`. Vertex digests
//! identify vertices within the stream (see `trace::vertex_digest`), not LLB ops.
//!
//! Not responsible for: BuildKit's `inputs`, `progressGroup` and `warnings` (the engine has no
//! events for them yet).

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::trace::{State, Trace, Update, Vertex};
use crate::progress::Event;

/// BuildKit's error text for a canceled vertex (`context.Canceled`).
const CANCELED: &str = "context canceled";

/// The rawjson display's state.
#[derive(Debug)]
pub struct RawJson {
    trace: Trace,
    /// The wall-clock time of `at == 0`.
    epoch: SystemTime,
}

impl RawJson {
    /// A display whose time 0 is `epoch`.
    pub fn new(epoch: SystemTime) -> Self {
        RawJson {
            trace: Trace::default(),
            epoch,
        }
    }

    /// The lines for one event received at `at`.
    pub fn event(&mut self, event: &Event, at: Duration) -> String {
        let updates = self.trace.apply(event, at);
        self.print(&updates)
    }

    /// The lines when the build ends at `at` (vertices still running are canceled).
    pub fn finish(&mut self, at: Duration) -> String {
        let updates = self.trace.finish(at);
        self.print(&updates)
    }

    fn print(&self, updates: &[Update]) -> String {
        let mut out = String::new();
        for u in updates {
            let line = match u {
                Update::Started(i) | Update::Completed(i) => {
                    json!({ "vertexes": [self.vertex(self.trace.vertex(*i))] })
                }
                Update::Status { vertex, status } => {
                    let v = self.trace.vertex(*vertex);
                    let s = &v.statuses[*status];
                    let mut o = Map::new();
                    o.insert("id".into(), s.id.clone().into());
                    o.insert("vertex".into(), v.digest.clone().into());
                    o.insert("current".into(), 0.into());
                    o.insert(
                        "timestamp".into(),
                        self.time(s.completed.unwrap_or(s.started)).into(),
                    );
                    o.insert("started".into(), self.time(s.started).into());
                    if let Some(c) = s.completed {
                        o.insert("completed".into(), self.time(c).into());
                    }
                    json!({ "statuses": [o] })
                }
                Update::Log { vertex, line } => {
                    let mut data = line.text.clone().into_bytes();
                    data.push(b'\n');
                    json!({ "logs": [{
                        "vertex": self.trace.vertex(*vertex).digest,
                        "stream": line.stream.fd(),
                        "data": base64::engine::general_purpose::STANDARD.encode(data),
                        "timestamp": self.time(line.at),
                    }] })
                }
            };
            out.push_str(&line.to_string());
            out.push('\n');
        }
        out
    }

    fn vertex(&self, v: &Vertex) -> Value {
        let mut o = Map::new();
        o.insert("digest".into(), v.digest.clone().into());
        o.insert("name".into(), v.name.clone().into());
        o.insert("started".into(), self.time(v.started).into());
        if let Some(c) = v.state.completed_at() {
            o.insert("completed".into(), self.time(c).into());
        }
        match &v.state {
            State::Cached { .. } => {
                o.insert("cached".into(), true.into());
            }
            State::Failed { error, .. } => {
                o.insert("error".into(), error.clone().into());
            }
            State::Canceled { .. } => {
                o.insert("error".into(), CANCELED.into());
            }
            State::Running | State::Done { .. } => {}
        }
        Value::Object(o)
    }

    /// RFC 3339 in UTC with nanoseconds, as Go marshals a `time.Time`.
    fn time(&self, at: Duration) -> String {
        use time::format_description::well_known::Rfc3339;
        time::OffsetDateTime::from(self.epoch + at)
            .format(&Rfc3339)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::{OutputStream, StepId};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn every_line_is_a_solve_status() {
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut d = RawJson::new(epoch);
        let s = |index| StepId {
            stage: String::new(),
            index,
            total: 3,
        };
        let mut out = String::new();
        out += &d.event(
            &Event::StepCached {
                step: s(1),
                text: "FROM scratch".into(),
            },
            ms(0),
        );
        out += &d.event(
            &Event::StepStarted {
                step: s(2),
                text: "RUN echo hi".into(),
            },
            ms(10),
        );
        out += &d.event(
            &Event::StepOutput {
                step: s(2),
                stream: OutputStream::Stderr,
                elapsed: ms(5),
                line: "hi".into(),
            },
            ms(15),
        );
        out += &d.event(
            &Event::StepFailed {
                step: s(2),
                elapsed: ms(20),
                error: "exit code: 1".into(),
            },
            ms(30),
        );
        out += &d.event(
            &Event::StepStarted {
                step: s(3),
                text: "RUN sleep 9".into(),
            },
            ms(31),
        );
        out += &d.finish(ms(40));
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 7, "{out}");
        let cached = &lines[1]["vertexes"][0];
        assert_eq!(cached["name"], "[1/3] FROM scratch");
        assert_eq!(cached["cached"], true);
        assert_eq!(cached["started"], "2023-11-14T22:13:20Z");
        assert_eq!(cached["completed"], "2023-11-14T22:13:20Z");
        let started = &lines[2]["vertexes"][0];
        assert_eq!(started["name"], "[2/3] RUN echo hi");
        assert_eq!(started["started"], "2023-11-14T22:13:20.01Z");
        assert!(started.get("completed").is_none());
        let log = &lines[3]["logs"][0];
        assert_eq!(log["vertex"], started["digest"]);
        assert_eq!(log["stream"], 2);
        assert_eq!(log["data"], "aGkK");
        assert_eq!(log["timestamp"], "2023-11-14T22:13:20.015Z");
        assert_eq!(lines[4]["vertexes"][0]["error"], "exit code: 1");
        assert_eq!(lines[6]["vertexes"][0]["error"], CANCELED);
        assert_eq!(
            lines[6]["vertexes"][0]["completed"],
            "2023-11-14T22:13:20.04Z"
        );
    }

    #[test]
    fn export_and_tags_are_statuses_of_the_export_vertex() {
        let mut d = RawJson::new(SystemTime::UNIX_EPOCH);
        let mut out = d.event(
            &Event::Exported {
                image_id: "sha256:aa".into(),
                manifest: "sha256:bb".into(),
            },
            ms(1),
        );
        out += &d.event(&Event::Tagged { name: "a:1".into() }, ms(2));
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let digest = &lines[0]["vertexes"][0]["digest"];
        assert_eq!(lines[0]["vertexes"][0]["name"], "exporting to image");
        assert_eq!(lines[2]["statuses"][0]["id"], "writing image sha256:aa");
        assert_eq!(lines[4]["statuses"][0]["id"], "naming to a:1");
        assert_eq!(&lines[4]["statuses"][0]["vertex"], digest);
        assert_eq!(lines[4]["statuses"][0]["current"], 0);
    }
}
