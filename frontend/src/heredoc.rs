//! Heredocs (`<<EOF` ... `EOF`) in `RUN`, `COPY` and `ADD`.
//!
//! Responsible for: finding heredoc markers in an instruction's joined line with
//! BuildKit's rules (file descriptor, `<<-` chomping, quoted names that turn expansion
//! off) and the [`Heredoc`] value with its raw body.
//! Not responsible for: reading the body lines (`lexer`), or deciding which
//! instructions may have heredocs (`syntax`).

use serde::Serialize;

use crate::expand::{cooked_words, raw_words};
use crate::span::Span;

/// A heredoc attached to an instruction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The terminator word with quotes removed (`<<'EOF'` gives `EOF`).
    pub name: String,
    /// The file descriptor before `<<` (`3<<EOF`); 0 when absent.
    pub fd: u32,
    /// `false` when any part of the name was quoted: the body is then not expanded.
    pub expand: bool,
    /// `<<-`: leading tabs are removed from body lines when the instruction runs.
    pub chomp: bool,
    /// The body lines exactly as in the file, each ending with `\n`; tabs not removed.
    pub content: String,
    /// The body lines in the source, without the terminator line.
    pub span: Span,
}

impl Heredoc {
    /// The body as the instruction sees it: with `chomp`, leading tabs removed from
    /// every line (BuildKit's `ChompHeredocContent`).
    pub fn chomped_content(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// A heredoc marker found in a line, before its body is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    pub name: String,
    pub fd: u32,
    pub expand: bool,
    pub chomp: bool,
}

/// The heredoc markers in `line`, in order. A line with an unbalanced quote has none.
pub(crate) fn markers_in_line(line: &str) -> Vec<Marker> {
    let Ok(words) = raw_words(line) else {
        return Vec::new();
    };
    // `<<` followed by spaces joins the next word: `<<  EOF` is a heredoc named EOF.
    let mut joined: Vec<String> = Vec::with_capacity(words.len());
    let mut words = words.into_iter().peekable();
    while let Some(word) = words.next() {
        let bare_operator =
            word.ends_with("<<") && word[..word.len() - 2].bytes().all(|b| b.is_ascii_digit());
        match words.peek() {
            Some(next) if bare_operator => {
                joined.push(format!("{word} {next}"));
                words.next();
            }
            _ => joined.push(word),
        }
    }
    joined.iter().filter_map(|w| parse_marker(w)).collect()
}

/// Matches `^(\d*)<<(-?)\s*([^<]*)$` and reads the name word with BuildKit's rules.
pub(crate) fn parse_marker(word: &str) -> Option<Marker> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let name_word = rest.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if name_word.is_empty() || name_word.contains('<') {
        return None;
    }
    let fd = if digits == 0 {
        0
    } else {
        word[..digits].parse().ok()?
    };
    let cooked = cooked_words(name_word).ok()?;
    let [name] = cooked.as_slice() else {
        return None;
    };
    let raw = raw_words(name_word).ok()?;
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = raw.len() == 1 && quotes(name) == quotes(&raw[0]);
    Some(Marker {
        name: name.clone(),
        fd,
        expand,
        chomp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, u32, bool, bool)> {
        markers_in_line(line)
            .into_iter()
            .map(|m| (m.name, m.fd, m.expand, m.chomp))
            .collect()
    }

    #[test]
    fn marker_forms() {
        assert_eq!(names("RUN <<EOF"), [("EOF".into(), 0, true, false)]);
        assert_eq!(names("RUN 3<<-'E F' cat"), [("E F".into(), 3, false, true)]);
        assert_eq!(names("RUN <<  EOF"), [("EOF".into(), 0, true, false)]);
        assert!(names("RUN <<- EOF").is_empty());
        assert_eq!(names("RUN << -EOF")[0].0, "-EOF");
        assert_eq!(names("RUN <<E\\OF")[0], ("EOF".into(), 0, true, false));
        assert!(names("RUN \"<<EOF\" a<<b").is_empty());
        assert!(names("RUN <<EOF 'x").is_empty());
        assert_eq!(names("RUN <<A <<B").len(), 2);
    }

    #[test]
    fn chomp() {
        let h = Heredoc {
            name: "E".into(),
            fd: 0,
            expand: true,
            chomp: true,
            content: "\t\ta\n\tb\n".into(),
            span: Span::default(),
        };
        assert_eq!(h.chomped_content(), "a\nb\n");
    }
}
