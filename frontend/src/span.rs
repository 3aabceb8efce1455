//! Byte spans into the Dockerfile source and their 1-based line/column locations.
//!
//! Responsible for: the [`Span`] every AST node carries, and turning a span into a
//! [`Location`] (line, column counted in characters) or into the text of its line.
//! [`LineIndex`] does that for many spans of one source in about constant time each;
//! [`line_column`], [`line_bounds`] and [`Location::of`] are one-off conveniences that
//! scan the source up to the offset, so code that locates every instruction (or every
//! diagnostic) of a file uses a [`LineIndex`] instead.
//! Not responsible for: rendering diagnostics (see `diagnostic`), or knowing what the
//! text means.

use serde::Serialize;

/// A half-open byte range `start..end` into the source text given to [`crate::parse`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub const fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// An empty span at `offset`, for things that are missing (an absent argument).
    pub const fn empty(offset: usize) -> Self {
        Self::new(offset, offset)
    }

    pub const fn len(self) -> usize {
        self.end - self.start
    }

    pub const fn is_empty(self) -> bool {
        self.start == self.end
    }

    /// The smallest span covering both `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    /// The source text under this span (empty if the span is out of range).
    pub fn text(self, source: &str) -> &str {
        source.get(self.start..self.end).unwrap_or("")
    }
}

/// Where a piece of Dockerfile text is: 1-based line and column (in characters) of its
/// first character, the 1-based line its last character is on, and its byte span.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Location {
    pub line: u32,
    pub column: u32,
    /// 1-based line of the last character (inclusive); equals `line` for one-line text.
    pub end_line: u32,
    pub span: Span,
}

impl Location {
    /// Computes the location of `span` in `source`. This scans `source` up to the span;
    /// to locate many spans of one source, build a [`LineIndex`] once and use
    /// [`LineIndex::location`].
    pub fn of(span: Span, source: &str) -> Location {
        let (line, column) = line_column(source, span.start);
        let (end_line, _) = line_column(source, last_char_offset(span));
        Location {
            line,
            column,
            end_line,
            span,
        }
    }
}

/// The offset of the last character of `span` (its start if it is empty).
fn last_char_offset(span: Span) -> usize {
    if span.is_empty() {
        span.start
    } else {
        span.end - 1
    }
}

/// Where every line of one source text starts, for locating many offsets in it: built
/// once in linear time, then [`LineIndex::line_column`] is a binary search plus, on a
/// line with non-ASCII text, a count of the characters before the offset on its line.
/// Gives exactly the results of [`line_column`], [`line_bounds`] and [`Location::of`].
#[derive(Clone, Debug)]
pub struct LineIndex<'s> {
    source: &'s str,
    /// Byte offset of the first byte of every line (after each `\n`); `starts[0] == 0`.
    starts: Vec<usize>,
    /// Whether the line of the same index is all ASCII (its columns are byte counts).
    ascii: Vec<bool>,
}

impl<'s> LineIndex<'s> {
    pub fn new(source: &'s str) -> Self {
        let mut starts = vec![0];
        let mut ascii = Vec::new();
        let mut line_ascii = true;
        for (i, b) in source.bytes().enumerate() {
            if b == b'\n' {
                starts.push(i + 1);
                ascii.push(line_ascii);
                line_ascii = true;
            } else if !b.is_ascii() {
                line_ascii = false;
            }
        }
        ascii.push(line_ascii);
        Self {
            source,
            starts,
            ascii,
        }
    }

    /// The text this index was built from.
    pub fn source(&self) -> &'s str {
        self.source
    }

    /// 0-based index of the line containing byte `offset` (already clamped).
    fn line_of(&self, offset: usize) -> usize {
        // `starts[0] == 0 <= offset`, so at least one start qualifies.
        self.starts.partition_point(|&start| start <= offset) - 1
    }

    /// 1-based line and 1-based character column of byte `offset`, as [`line_column`].
    pub fn line_column(&self, offset: usize) -> (u32, u32) {
        let offset = clamp_to_char_boundary(self.source, offset);
        let line = self.line_of(offset);
        let line_start = self.starts[line];
        let column = if self.ascii[line] {
            offset - line_start
        } else {
            let mut prefix = &self.source[line_start..offset];
            if line_start == 0 {
                prefix = prefix.strip_prefix('\u{feff}').unwrap_or(prefix);
            }
            prefix.chars().count()
        };
        (to_u32(line + 1), to_u32(column + 1))
    }

    /// The location of `span`, as [`Location::of`].
    pub fn location(&self, span: Span) -> Location {
        let (line, column) = self.line_column(span.start);
        let end = clamp_to_char_boundary(self.source, last_char_offset(span));
        Location {
            line,
            column,
            end_line: to_u32(self.line_of(end) + 1),
            span,
        }
    }

    /// The byte range of the line containing `offset`, as [`line_bounds`].
    pub fn line_bounds(&self, offset: usize) -> Span {
        let offset = clamp_to_char_boundary(self.source, offset);
        let line = self.line_of(offset);
        let mut start = self.starts[line];
        if start == 0 && self.source.starts_with('\u{feff}') {
            start = '\u{feff}'.len_utf8().min(self.source.len());
        }
        // The next line's start is just after this line's `\n`.
        let mut end = self
            .starts
            .get(line + 1)
            .map_or(self.source.len(), |next| next - 1);
        while end > start && self.source.as_bytes()[end - 1] == b'\r' {
            end -= 1;
        }
        Span::new(start.min(end), end)
    }
}

/// 1-based line and 1-based character column of byte `offset` in `source`.
///
/// A UTF-8 byte order mark at the very start is not counted as a column.
pub fn line_column(source: &str, offset: usize) -> (u32, u32) {
    let offset = clamp_to_char_boundary(source, offset);
    let before = &source[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let mut prefix = &source[line_start..offset];
    if line_start == 0 {
        prefix = prefix.strip_prefix('\u{feff}').unwrap_or(prefix);
    }
    let column = prefix.chars().count() + 1;
    (to_u32(line), to_u32(column))
}

/// The byte range of the line containing `offset`, without its line end (`\r*\n`) and,
/// on the first line, without a byte order mark.
pub fn line_bounds(source: &str, offset: usize) -> Span {
    let offset = clamp_to_char_boundary(source, offset);
    let mut start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    if start == 0 && source.starts_with('\u{feff}') {
        start = '\u{feff}'.len_utf8().min(source.len());
    }
    let mut end = source[offset..]
        .find('\n')
        .map_or(source.len(), |i| offset + i);
    while end > start && source.as_bytes()[end - 1] == b'\r' {
        end -= 1;
    }
    Span::new(start.min(end), end)
}

fn clamp_to_char_boundary(source: &str, offset: usize) -> usize {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters() {
        let src = "FROM a\nLABEL x=\"héllo\" y=1\n";
        let y = src.find("y=").unwrap();
        assert_eq!(line_column(src, y), (2, 17));
        assert_eq!(line_column(src, 0), (1, 1));
    }

    #[test]
    fn bom_is_not_a_column() {
        let src = "\u{feff}FROM a";
        assert_eq!(line_column(src, 3), (1, 1));
        assert_eq!(line_bounds(src, 4), Span::new(3, src.len()));
    }

    #[test]
    fn line_bounds_strip_crlf() {
        let src = "FROM a\r\nRUN x\r\n";
        assert_eq!(line_bounds(src, 9).text(src), "RUN x");
    }

    /// Every offset of a few awkward sources (BOM, CRLF, multi-byte characters, empty
    /// lines, no final newline, offsets past the end) agrees with the one-off scans.
    #[test]
    fn line_index_agrees_with_scans() {
        let sources = [
            "",
            "\n",
            "FROM a",
            "\u{feff}FROM a\r\nRUN é \\\n  x\n\n\nCMD ☃\n",
            "\u{feff}",
            "\u{feff}\n\u{feff}x\r\r\n",
            "a\nb\r\nc\n",
        ];
        for src in sources {
            let index = LineIndex::new(src);
            for offset in 0..=src.len() + 2 {
                assert_eq!(
                    index.line_column(offset),
                    line_column(src, offset),
                    "{src:?} @ {offset}"
                );
                assert_eq!(
                    index.line_bounds(offset),
                    line_bounds(src, offset),
                    "{src:?} @ {offset}"
                );
                for end in offset..=src.len() + 2 {
                    let span = Span::new(offset, end);
                    assert_eq!(index.location(span), Location::of(span, src), "{span:?}");
                }
            }
        }
    }

    #[test]
    fn location_spans_lines() {
        let src = "RUN a \\\n  b\nCMD c";
        let loc = Location::of(Span::new(0, 11), src);
        assert_eq!((loc.line, loc.column, loc.end_line), (1, 1, 2));
    }
}
