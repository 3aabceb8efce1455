//! Rendering of build progress on stderr, as buildx does (`--progress=auto|tty|plain|rawjson|
//! quiet`, BuildKit's `progressui` display modes):
//!
//! - `plain` ([`plain`]): line-based, for CI logs.
//! - `tty` ([`tty`]): a live view redrawn in place, refreshed by a ticker thread.
//! - `rawjson` ([`rawjson`]): one JSON `SolveStatus` per line.
//! - `quiet`: nothing (`-q` too, whatever `--progress` says).
//! - `auto`: `tty` when stderr is a terminal (and `TERM` is not `dumb`), else `plain`.
//!
//! `--progress=tty` without a terminal on stderr is an error, as in buildx. stdout is never
//! written here: it carries only data (the image ID).
//!
//! Not responsible for: the events (`crate::progress`), errors after a failed build (the CLI's
//! located error is printed after the display ends, when the [`Progress`] is dropped).

mod plain;
mod rawjson;
mod trace;
mod tty;

use std::io::{IsTerminal as _, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::progress::{Event, Reporter};
use plain::Plain;
use rawjson::RawJson;
use tty::{Size, Tty};

/// How often the tty ticker wakes to redraw running timers (frames stay ≥ 100 ms apart).
const TICK: Duration = Duration::from_millis(50);

/// A `--progress` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Auto,
    Tty,
    Plain,
    RawJson,
    Quiet,
}

/// A display that can be chosen: [`ProgressMode`] with `auto` resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chosen {
    Tty,
    Plain,
    RawJson,
    Quiet,
}

/// Why no display could be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    #[error("unsupported --progress `{value}`: use auto, tty, plain, rawjson or quiet")]
    Unknown { value: String },
    #[error("--progress=tty needs a terminal on stderr: use plain or rawjson when redirecting")]
    NotATerminal,
}

impl ProgressMode {
    /// Parse a `--progress` (or `BUILDKIT_PROGRESS`) value; empty means `auto`.
    pub fn parse(value: &str) -> Result<Self, ProgressError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(ProgressMode::Auto),
            "tty" => Ok(ProgressMode::Tty),
            "plain" => Ok(ProgressMode::Plain),
            "rawjson" => Ok(ProgressMode::RawJson),
            "quiet" => Ok(ProgressMode::Quiet),
            _ => Err(ProgressError::Unknown {
                value: value.to_owned(),
            }),
        }
    }

    /// The display for this mode; `quiet` (`-q`) wins over any mode; `terminal`: stderr is a
    /// terminal that understands cursor movement.
    fn choose(self, quiet: bool, terminal: bool) -> Result<Chosen, ProgressError> {
        Ok(match self {
            _ if quiet => Chosen::Quiet,
            ProgressMode::Quiet => Chosen::Quiet,
            ProgressMode::Plain => Chosen::Plain,
            ProgressMode::RawJson => Chosen::RawJson,
            ProgressMode::Tty if terminal => Chosen::Tty,
            ProgressMode::Tty => return Err(ProgressError::NotATerminal),
            ProgressMode::Auto if terminal => Chosen::Tty,
            ProgressMode::Auto => Chosen::Plain,
        })
    }
}

enum Display {
    Plain(Plain),
    Tty(Tty),
    RawJson(RawJson),
}

/// The state the reporter and the ticker share.
struct Live {
    display: Display,
    out: Box<dyn Write + Send>,
    start: Instant,
    /// The build ended: the ticker stops.
    ended: bool,
}

impl Live {
    fn write(&mut self, text: &str) {
        if !text.is_empty() {
            // A closed stderr must not fail the build.
            let _ = self.out.write_all(text.as_bytes());
            let _ = self.out.flush();
        }
    }
}

/// The build's progress display: a [`Reporter`] that renders on stderr in the chosen mode and
/// ends the display (the last tty frame, the export's `DONE`, canceled steps) when dropped.
pub struct Progress {
    live: Option<Arc<Mutex<Live>>>,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// The display `kiln build` asks for: `--progress` (or `BUILDKIT_PROGRESS`), with `-q`
    /// winning.
    pub fn stderr(progress: &str, quiet: bool) -> Result<Self, ProgressError> {
        let stderr = std::io::stderr();
        let terminal = stderr.is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb");
        let chosen = ProgressMode::parse(progress)?.choose(quiet, terminal)?;
        let colors = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let display = match chosen {
            Chosen::Quiet => {
                return Ok(Progress {
                    live: None,
                    ticker: None,
                });
            }
            Chosen::Plain => Display::Plain(Plain::default()),
            Chosen::RawJson => Display::RawJson(RawJson::new(SystemTime::now())),
            Chosen::Tty => Display::Tty(Tty::new(colors)),
        };
        let live = Arc::new(Mutex::new(Live {
            display,
            out: Box::new(stderr),
            start: Instant::now(),
            ended: false,
        }));
        let ticker = (chosen == Chosen::Tty).then(|| {
            let live = Arc::clone(&live);
            std::thread::spawn(move || tick(&live))
        });
        Ok(Progress {
            live: Some(live),
            ticker,
        })
    }

    /// Whether nothing is displayed (`quiet`).
    pub fn is_quiet(&self) -> bool {
        self.live.is_none()
    }
}

impl Reporter for Progress {
    fn event(&self, event: Event) {
        let Some(live) = &self.live else { return };
        let mut live = lock(live);
        let at = live.start.elapsed();
        let text = match &mut live.display {
            Display::Plain(p) => p.event(&event, at),
            Display::RawJson(r) => r.event(&event, at),
            Display::Tty(t) => t.event(&event, at, terminal_size()).unwrap_or_default(),
        };
        live.write(&text);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        let Some(live) = &self.live else { return };
        lock(live).ended = true;
        if let Some(ticker) = self.ticker.take() {
            ticker.thread().unpark();
            let _ = ticker.join();
        }
        let mut live = lock(live);
        let at = live.start.elapsed();
        let text = match &mut live.display {
            Display::Plain(p) => p.finish(at),
            Display::RawJson(r) => r.finish(at),
            Display::Tty(t) => t.finish(at, terminal_size()),
        };
        live.write(&text);
    }
}

/// The tty ticker: redraw running timers until the build ends.
fn tick(live: &Mutex<Live>) {
    loop {
        std::thread::park_timeout(TICK);
        let mut live = lock(live);
        if live.ended {
            return;
        }
        let at = live.start.elapsed();
        if let Display::Tty(t) = &mut live.display
            && let Some(frame) = t.tick(at, terminal_size())
        {
            live.write(&frame);
        }
    }
}

fn lock(live: &Mutex<Live>) -> MutexGuard<'_, Live> {
    live.lock().unwrap_or_else(|p| p.into_inner())
}

/// stderr's terminal size; 80×24 when it cannot be read.
fn terminal_size() -> Size {
    match rustix::termios::tcgetwinsize(std::io::stderr()) {
        Ok(ws) if ws.ws_col > 0 && ws.ws_row > 0 => Size {
            width: usize::from(ws.ws_col),
            height: usize::from(ws.ws_row),
        },
        _ => Size {
            width: 80,
            height: 24,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_like_buildx() {
        for (value, mode) in [
            ("", ProgressMode::Auto),
            ("auto", ProgressMode::Auto),
            ("tty", ProgressMode::Tty),
            ("PLAIN", ProgressMode::Plain),
            ("rawjson", ProgressMode::RawJson),
            ("quiet", ProgressMode::Quiet),
        ] {
            assert_eq!(ProgressMode::parse(value).unwrap(), mode, "{value}");
        }
        let e = ProgressMode::parse("fancy").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported --progress `fancy`: use auto, tty, plain, rawjson or quiet"
        );
    }

    #[test]
    fn auto_follows_the_terminal_and_quiet_wins() {
        use ProgressMode as M;
        assert_eq!(M::Auto.choose(false, true).unwrap(), Chosen::Tty);
        assert_eq!(M::Auto.choose(false, false).unwrap(), Chosen::Plain);
        assert_eq!(M::Tty.choose(false, true).unwrap(), Chosen::Tty);
        assert!(matches!(
            M::Tty.choose(false, false),
            Err(ProgressError::NotATerminal)
        ));
        assert_eq!(M::Plain.choose(false, true).unwrap(), Chosen::Plain);
        assert_eq!(M::RawJson.choose(false, true).unwrap(), Chosen::RawJson);
        for m in [M::Auto, M::Tty, M::Plain, M::RawJson, M::Quiet] {
            assert_eq!(m.choose(true, false).unwrap(), Chosen::Quiet);
        }
    }
}
