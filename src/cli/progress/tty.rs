//! `--progress=tty`: the live view BuildKit draws on a terminal (`progressui/display.go`'s
//! `ttyDisplay`), redrawn in place:
//!
//! ```text
//! [+] Building 2.4s (3/5)
//!  => [1/5] FROM busybox:local                                   0.0s
//!  => CACHED [2/5] COPY app /app                                 0.0s
//!  => [3/5] RUN make                                             2.3s
//!  => => # cc -c main.c
//!  => => # cc -o app main.o
//! ```
//!
//! Each vertex is one line with its timer on the right; a running step shows the last
//! [`TAIL_LINES`](super::trace::TAIL_LINES) lines of its output under it, a completed one collapses to its line (blue;
//! red `ERROR`, yellow `CANCELED`; no colours with `NO_COLOR`). Several steps may run at once.
//! The frame never has more rows than the terminal (oldest completed vertices go first, then
//! output lines) nor lines as wide as it (names are cut; on a very narrow terminal the timers
//! go), so cursor movement stays exact. A redraw moves the cursor up over the previous frame
//! (`CR`, `CSI n A`), rewrites each line and clears its rest (`CSI K`) and what is left below
//! (`CSI J`), with the cursor hidden meanwhile (`CSI ?25l` / `CSI ?25h`): no other escape
//! sequences are written. Frames come at most every 100 ms (BuildKit's display rate), except
//! the one for the export and tags, drawn at once so that nothing is redrawn after the build
//! (the CLI may print push progress below the frame). The last frame says `FINISHED`.
//!
//! Not responsible for: finding the terminal's size (the caller passes it to every call), the
//! clock, the located error after a failed build (printed by the CLI; it carries the output's
//! tail, so BuildKit's `------ > step: ------` log block is not repeated).

use std::fmt::Write as _;
use std::time::Duration;

use super::trace::{Kind, State, Trace, Vertex};
use crate::progress::Event;

/// The shortest time between two frames.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Columns kept for a name before the timers are dropped on a narrow terminal.
const MIN_NAME: usize = 12;

const HIDE_CURSOR: &str = "\x1b[?25l";
const SHOW_CURSOR: &str = "\x1b[?25h";
const CLEAR_LINE_REST: &str = "\x1b[K";
const CLEAR_BELOW: &str = "\x1b[J";

/// The terminal's size in cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: usize,
    pub height: usize,
}

/// How a row is coloured (BuildKit's `colors.go` defaults, and faint output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Done,
    Error,
    Canceled,
    Log,
}

impl Style {
    fn sgr(self) -> Option<&'static str> {
        match self {
            Style::Plain => None,
            Style::Done => Some("\x1b[34m"),
            Style::Error => Some("\x1b[31m"),
            Style::Canceled => Some("\x1b[33m"),
            Style::Log => Some("\x1b[2m"),
        }
    }
}

#[derive(Debug)]
struct Row {
    text: String,
    style: Style,
}

/// The rows of one vertex: its line and statuses, then its output's tail.
struct Block {
    rows: Vec<Row>,
    logs: Vec<Row>,
    completed: bool,
}

/// The tty display's state.
#[derive(Debug)]
pub struct Tty {
    trace: Trace,
    colors: bool,
    /// Rows of the frame on screen (the cursor is at the start of the row below them).
    drawn_rows: usize,
    last_draw: Option<Duration>,
    /// Something changed since the last frame.
    dirty: bool,
}

impl Tty {
    pub fn new(colors: bool) -> Self {
        Tty {
            trace: Trace::default(),
            colors,
            drawn_rows: 0,
            last_draw: None,
            dirty: false,
        }
    }

    /// Take in one event received at `at`; a frame when one is due.
    pub fn event(&mut self, event: &Event, at: Duration, size: Size) -> Option<String> {
        self.trace.apply(event, at);
        self.dirty = true;
        let now = matches!(event, Event::Exported { .. } | Event::Tagged { .. });
        (now || self.due(at)).then(|| self.frame(at, size, false))
    }

    /// A frame if one is due at `at`: something changed, or a step's timer runs.
    pub fn tick(&mut self, at: Duration, size: Size) -> Option<String> {
        ((self.dirty || self.trace.step_running()) && self.due(at))
            .then(|| self.frame(at, size, false))
    }

    /// The last frame when the build ends at `at` (steps still running are canceled), or
    /// nothing when the frame on screen is already the last one.
    pub fn finish(&mut self, at: Duration, size: Size) -> String {
        if !self.trace.finish(at).is_empty() {
            self.dirty = true;
        }
        if self.dirty {
            self.frame(at, size, true)
        } else {
            String::new()
        }
    }

    fn due(&self, at: Duration) -> bool {
        self.last_draw
            .is_none_or(|last| at.saturating_sub(last) >= MIN_INTERVAL)
    }

    /// Redraw over the previous frame; `all`: the last frame, every vertex, no height limit.
    fn frame(&mut self, at: Duration, size: Size, all: bool) -> String {
        let width = size.width.max(2);
        let running = self.trace.step_running();
        let (total, completed) = self.trace.step_counts();
        let exported = self
            .trace
            .vertices()
            .iter()
            .any(|v| v.kind == Kind::Export && v.state != State::Running);
        let finished = !running && (exported || (all && total > 0 && completed == total));
        // The clock stops when nothing runs any more.
        let clock = if running { at } else { self.trace.last_event() };
        let header = format!(
            "[+] Building {:.1}s ({completed}/{total}){}",
            clock.as_secs_f64(),
            if finished { " FINISHED" } else { "" }
        );
        let mut blocks: Vec<Block> = self
            .trace
            .vertices()
            .iter()
            .map(|v| block(v, at, width))
            .collect();
        if !all {
            fit_height(&mut blocks, size.height.saturating_sub(2).max(1));
        }
        let mut rows = vec![Row {
            text: cut(&header, width - 1),
            style: Style::Plain,
        }];
        for b in blocks {
            rows.extend(b.rows);
            rows.extend(b.logs);
        }
        if !all {
            // Never more rows than the screen: moving up over them must stay exact.
            let max = size.height.saturating_sub(1).max(1);
            if rows.len() > max {
                rows.drain(1..=rows.len() - max);
            }
        }

        let mut out = String::from(HIDE_CURSOR);
        if self.drawn_rows > 0 {
            let _ = write!(out, "\r\x1b[{}A", self.drawn_rows);
        }
        for row in &rows {
            match row.style.sgr().filter(|_| self.colors) {
                Some(sgr) => {
                    let _ = write!(out, "{sgr}{}\x1b[0m", row.text);
                }
                None => out.push_str(&row.text),
            }
            out.push_str(CLEAR_LINE_REST);
            out.push('\n');
        }
        out.push_str(CLEAR_BELOW);
        out.push_str(SHOW_CURSOR);
        self.drawn_rows = rows.len();
        self.last_draw = Some(at);
        self.dirty = false;
        out
    }
}

/// Vertex `v`'s rows at time `at`.
fn block(v: &Vertex, at: Duration, width: usize) -> Block {
    let (label, style, took) = match &v.state {
        State::Running => ("", Style::Plain, at.saturating_sub(v.started)),
        State::Done { elapsed, .. } => ("", Style::Done, *elapsed),
        State::Cached { .. } => ("CACHED ", Style::Done, Duration::ZERO),
        State::Failed { elapsed, .. } => ("ERROR ", Style::Error, *elapsed),
        State::Canceled { at: end } => {
            ("CANCELED ", Style::Canceled, end.saturating_sub(v.started))
        }
    };
    let mut rows = vec![Row {
        text: line(&format!(" => {label}{}", clean(&v.name)), took, width),
        style,
    }];
    for s in &v.statuses {
        let took = s.completed.unwrap_or(at).saturating_sub(s.started);
        rows.push(Row {
            text: line(&format!(" => => {}", clean(&s.id)), took, width),
            style,
        });
    }
    let running = v.state == State::Running;
    let logs = if running {
        v.tail
            .iter()
            .map(|l| Row {
                text: cut(&format!(" => => # {}", clean(&l.text)), width - 1),
                style: Style::Log,
            })
            .collect()
    } else {
        Vec::new()
    };
    Block {
        rows,
        logs,
        completed: !running,
    }
}

/// Drop rows until the blocks fit in `budget` rows: the oldest completed vertices first, then
/// output lines (oldest first, from the step that shows the most).
fn fit_height(blocks: &mut Vec<Block>, budget: usize) {
    let count = |b: &[Block]| b.iter().map(|b| b.rows.len() + b.logs.len()).sum::<usize>();
    while count(blocks) > budget {
        match blocks.iter().position(|b| b.completed) {
            Some(i) => {
                blocks.remove(i);
            }
            None => break,
        }
    }
    while count(blocks) > budget {
        // The first of the blocks showing the most lines: older steps give way first.
        let most = blocks.iter().map(|b| b.logs.len()).max().unwrap_or(0);
        match blocks.iter_mut().find(|b| most > 0 && b.logs.len() == most) {
            Some(b) => {
                b.logs.remove(0);
            }
            None => break,
        }
    }
}

/// `left` and the timer `took` on the right of a row narrower than `width`; on a terminal too
/// narrow for both, `left` alone, cut.
fn line(left: &str, took: Duration, width: usize) -> String {
    let secs = took.as_secs_f64();
    let secs = if secs < 0.05 { 0.0 } else { secs };
    let timer = format!("{secs:.1}s");
    let avail = width - 1;
    let timer_len = timer.len();
    if avail < timer_len + 1 + MIN_NAME {
        return cut(left, avail);
    }
    let name_len = avail - timer_len - 1;
    let name = cut(left, name_len);
    let pad = name_len - cells(&name);
    format!("{name}{:pad$} {timer}", "")
}

/// The cells `s` may take: one per ASCII character, two per other character (a wide one, at
/// worst: a row drawn narrower than estimated is harmless, a wider one would wrap).
fn cells(s: &str) -> usize {
    s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum()
}

/// `s` cut to at most `max` [`cells`] (the text is cleaned of control characters).
fn cut(s: &str, max: usize) -> String {
    let mut used = 0;
    s.chars()
        .take_while(|c| {
            used += if c.is_ascii() { 1 } else { 2 };
            used <= max
        })
        .collect()
}

/// Text made safe to draw in one row: what a terminal would show after the last carriage
/// return, without escape sequences or control characters, tabs expanded.
fn clean(s: &str) -> String {
    let s = s.rsplit('\r').find(|part| !part.is_empty()).unwrap_or("");
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    let mut col = 0;
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters, then a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ESC \.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\t' => {
                let n = 8 - col % 8;
                out.extend(std::iter::repeat_n(' ', n));
                col += n;
            }
            c if c.is_control() => {}
            c => {
                out.push(c);
                col += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::{OutputStream, StepId};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A terminal of `width` columns and unbounded height that understands exactly the escape
    /// sequences the display may write, and fails on anything else or on a row reaching the
    /// last column.
    struct Screen {
        width: usize,
        rows: Vec<Vec<char>>,
        row: usize,
        col: usize,
        cursor_hidden: bool,
        frames: usize,
    }

    impl Screen {
        fn new(width: usize) -> Self {
            Screen {
                width,
                rows: vec![Vec::new()],
                row: 0,
                col: 0,
                cursor_hidden: false,
                frames: 0,
            }
        }

        fn show(&mut self, frame: Option<String>) {
            if let Some(f) = frame {
                self.frames += 1;
                self.feed(&f);
            }
        }

        fn feed(&mut self, s: &str) {
            let mut chars = s.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\n' => {
                        self.row += 1;
                        self.col = 0;
                        if self.rows.len() <= self.row {
                            self.rows.push(Vec::new());
                        }
                    }
                    '\r' => self.col = 0,
                    '\x1b' => {
                        assert_eq!(chars.next(), Some('['), "only CSI sequences in {s:?}");
                        let mut params = String::new();
                        let fin = loop {
                            let c = chars.next().expect("a complete sequence");
                            if ('@'..='~').contains(&c) {
                                break c;
                            }
                            params.push(c);
                        };
                        match (params.as_str(), fin) {
                            ("?25", 'l') => self.cursor_hidden = true,
                            ("?25", 'h') => self.cursor_hidden = false,
                            (n, 'A') => {
                                let n: usize = n.parse().expect("CSI n A");
                                assert!(n <= self.row, "moves above the frame");
                                self.row -= n;
                            }
                            ("", 'K') => self.rows[self.row].truncate(self.col),
                            ("", 'J') => {
                                self.rows[self.row].truncate(self.col);
                                self.rows.truncate(self.row + 1);
                            }
                            ("0" | "2" | "31" | "33" | "34", 'm') => {}
                            other => panic!("unexpected escape sequence {other:?}"),
                        }
                    }
                    c => {
                        assert!(!c.is_control(), "control character {c:?}");
                        assert!(self.col < self.width - 1, "row {} too wide", self.row);
                        let line = &mut self.rows[self.row];
                        if line.len() <= self.col {
                            line.resize(self.col + 1, ' ');
                        }
                        line[self.col] = c;
                        self.col += 1;
                    }
                }
            }
        }

        fn lines(&self) -> Vec<String> {
            let mut v: Vec<String> = self
                .rows
                .iter()
                .map(|r| r.iter().collect::<String>().trim_end().to_owned())
                .collect();
            while v.last().is_some_and(String::is_empty) {
                v.pop();
            }
            v
        }
    }

    fn step(index: usize) -> StepId {
        StepId {
            stage: String::new(),
            index,
            total: 3,
        }
    }

    const SIZE: Size = Size {
        width: 50,
        height: 20,
    };

    #[test]
    fn live_frames_show_the_tail_and_the_last_frame_collapses_it() {
        let mut tty = Tty::new(true);
        let mut screen = Screen::new(SIZE.width);
        let ev = |tty: &mut Tty, e: Event, at| tty.event(&e, ms(at), SIZE);
        let f = ev(
            &mut tty,
            Event::StepCached {
                step: step(1),
                text: "FROM busybox:local".into(),
            },
            0,
        );
        screen.show(f);
        let f = ev(
            &mut tty,
            Event::StepStarted {
                step: step(2),
                text: "RUN make\tall".into(),
            },
            10,
        );
        screen.show(f);
        for n in 1..=9 {
            let f = ev(
                &mut tty,
                Event::StepOutput {
                    step: step(2),
                    stream: OutputStream::Stdout,
                    elapsed: ms(n * 9),
                    line: format!("\x1b[1mline\x1b[0m {n}"),
                },
                10 + n * 9,
            );
            screen.show(f);
        }
        // 90 ms of events after the first frame: rate-limited to none.
        assert_eq!(screen.frames, 1);
        screen.show(tty.tick(ms(150), SIZE));
        assert_eq!(
            screen.lines(),
            [
                "[+] Building 0.1s (1/3)",
                " => CACHED [1/3] FROM busybox:local          0.0s",
                " => [2/3] RUN make  all                      0.1s",
                " => => # line 4",
                " => => # line 5",
                " => => # line 6",
                " => => # line 7",
                " => => # line 8",
                " => => # line 9",
            ]
        );
        // Not due again yet.
        assert!(tty.tick(ms(200), SIZE).is_none());
        let f = ev(
            &mut tty,
            Event::StepFinished {
                step: step(2),
                elapsed: ms(1_234),
            },
            1_300,
        );
        screen.show(f);
        let f = ev(
            &mut tty,
            Event::StepStarted {
                step: step(3),
                text: "COPY a b".into(),
            },
            1_310,
        );
        assert!(f.is_none(), "rate-limited");
        let f = ev(
            &mut tty,
            Event::StepFinished {
                step: step(3),
                elapsed: ms(100),
            },
            1_410,
        );
        screen.show(f);
        let f = ev(
            &mut tty,
            Event::Exported {
                image_id: "sha256:1234".into(),
                manifest: "sha256:5678".into(),
            },
            1_420,
        );
        screen.show(f);
        let f = ev(
            &mut tty,
            Event::Tagged {
                name: "app:1".into(),
            },
            1_421,
        );
        assert!(f.is_some(), "the export is drawn at once");
        screen.show(f);
        assert!(tty.tick(ms(2_000), SIZE).is_none(), "nothing to redraw");
        assert_eq!(
            tty.finish(ms(2_100), SIZE),
            "",
            "the last frame is on screen"
        );
        assert!(!screen.cursor_hidden);
        assert_eq!(
            screen.lines(),
            [
                "[+] Building 1.4s (3/3) FINISHED",
                " => CACHED [1/3] FROM busybox:local          0.0s",
                " => [2/3] RUN make  all                      1.2s",
                " => [3/3] COPY a b                           0.1s",
                " => exporting to image                       0.0s",
                " => => exporting manifest sha256:5678        0.0s",
                " => => writing image sha256:1234             0.0s",
                " => => naming to app:1                       0.0s",
            ]
        );
    }

    #[test]
    fn a_failed_build_ends_with_error_and_canceled_lines() {
        let mut tty = Tty::new(false);
        let mut screen = Screen::new(SIZE.width);
        for (at, e) in [
            (
                0,
                Event::StepStarted {
                    step: step(1),
                    text: "RUN a".into(),
                },
            ),
            (
                1,
                Event::StepStarted {
                    step: step(2),
                    text: "RUN b".into(),
                },
            ),
            (
                500,
                Event::StepFailed {
                    step: step(1),
                    elapsed: ms(500),
                    error: "exit code: 1".into(),
                },
            ),
        ] {
            if let Some(f) = tty.event(&e, ms(at), SIZE) {
                screen.feed(&f);
            }
        }
        let last = tty.finish(ms(600), SIZE);
        for sgr in ["\x1b[0m", "\x1b[2m", "\x1b[31m", "\x1b[33m", "\x1b[34m"] {
            assert!(!last.contains(sgr), "no colours: {last:?}");
        }
        screen.feed(&last);
        assert_eq!(
            screen.lines(),
            [
                "[+] Building 0.6s (2/3)",
                " => ERROR [1/3] RUN a                        0.5s",
                " => CANCELED [2/3] RUN b                     0.6s",
            ]
        );
    }

    #[test]
    fn narrow_and_short_terminals_get_a_frame_that_fits() {
        for size in [
            Size {
                width: 14,
                height: 6,
            },
            Size {
                width: 3,
                height: 2,
            },
            Size {
                width: 0,
                height: 0,
            },
        ] {
            let mut tty = Tty::new(true);
            let mut screen = Screen::new(size.width.max(2));
            for i in 1..=3 {
                let e = Event::StepStarted {
                    step: step(i),
                    text: "RUN a-long-command --with --flags".into(),
                };
                if let Some(f) = tty.event(&e, ms(i as u64 * 200), size) {
                    screen.feed(&f);
                }
                let e = Event::StepOutput {
                    step: step(i),
                    stream: OutputStream::Stderr,
                    elapsed: ms(1),
                    line: "some output that is far too wide".into(),
                };
                if let Some(f) = tty.event(&e, ms(i as u64 * 200 + 100), size) {
                    screen.feed(&f);
                }
                assert!(
                    screen.lines().len() < size.height.max(2),
                    "{size:?}: {:?}",
                    screen.lines()
                );
            }
            if size.width == 14 {
                assert_eq!(
                    screen.lines(),
                    [
                        "[+] Building",
                        " => [1/3] RUN",
                        " => [2/3] RUN",
                        " => [3/3] RUN",
                        " => => # some",
                    ]
                );
            }
            screen.feed(&tty.finish(ms(1_000), size));
        }
    }

    #[test]
    fn cleaning_keeps_what_a_terminal_shows() {
        assert_eq!(clean("50%\r100%"), "100%");
        assert_eq!(clean("done\r"), "done");
        assert_eq!(clean("\x1b[31mred\x1b[0m"), "red");
        assert_eq!(clean("\x1b]0;title\x07text"), "text");
        assert_eq!(clean("a\tb"), "a       b");
        assert_eq!(clean("bell\x07"), "bell");
    }

    #[test]
    fn wide_characters_never_make_a_row_too_wide() {
        assert_eq!(cut("日本語のテキスト", 5), "日本");
        assert_eq!(cut("abc", 5), "abc");
        let row = line(" => RUN 日本語です", Duration::ZERO, 20);
        assert_eq!(row, " => RUN 日本語 0.0s");
        assert!(cells(&row) <= 19);
    }
}
