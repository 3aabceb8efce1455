//! BuildKit's AST dump format, for conformance tests and `--debug` output.
//!
//! Responsible for: rendering a [`Node`] as `(name ["--flag"] "arg" ...)` with Go's
//! `strconv.Quote` rules, byte for byte as BuildKit's `Node.Dump()` does, and a whole
//! file as one such line per instruction ([`dump`], [`Ast::dump`]), the format of
//! BuildKit's parser corpus (`shared/conformance/buildkit-parser/FORMAT.md`).
//! Not responsible for: anything typed; this is the syntax-level view only, so unknown
//! instructions and flags dump without complaint, as they do in BuildKit's parser.
//! Heredoc bodies, parser directives and comments produce no output (see FORMAT.md §6).

use std::fmt::Write as _;

use crate::diagnostic::Diagnostics;
use crate::syntax::{Ast, Node, parse_ast};

/// Parses `text` at the syntax level and renders BuildKit's dump of it: one line per
/// instruction, each ending with `\n`, e.g. `(from "alpine")\n(run "echo hi")\n`.
///
/// Fails with the syntax layer's diagnostics (invalid directives, non-string JSON
/// arrays, malformed `ENV`/`LABEL`, unterminated heredocs, no instructions); the typed
/// checks of [`parse`](crate::parse) (unknown keywords or flags, argument counts) are
/// not applied, so this accepts what BuildKit's parser accepts.
///
/// ```
/// let out = frontend::dump("FROM alpine AS base\nCOPY --chmod=755 a /b\n").unwrap();
/// assert_eq!(out, "(from \"alpine\" \"AS\" \"base\")\n(copy [\"--chmod=755\"] \"a\" \"/b\")\n");
/// ```
pub fn dump(text: &str) -> Result<String, Diagnostics> {
    parse_ast(text).map(|ast| ast.dump())
}

impl Ast {
    /// BuildKit's dump of every instruction, one per line, each ending with `\n`.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push_str(&node.dump());
            out.push('\n');
        }
        out
    }
}

impl Node {
    /// One line of BuildKit's dump, e.g. `(copy ["--from=a"] "x" "/y")`, with the
    /// `ONBUILD` trigger nested: `(onbuild (run "x"))`.
    ///
    /// BuildKit builds each level as `lowercase(keyword) [flags] args [next]` and trims
    /// it, so an empty keyword leaves no leading space. This walks the `ONBUILD` chain
    /// in a loop, so however deep the nesting it uses no stack and linear time.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        let mut depth = 0;
        let mut level = Some(self);
        while let Some(node) = level {
            let own = node.dump_own();
            out.push('(');
            depth += 1;
            match &node.next {
                // `trim(own + " " + next)`: only `own`'s start is at an end.
                Some(_) if own.trim().is_empty() => {}
                Some(_) => {
                    out.push_str(own.trim_start());
                    out.push(' ');
                }
                None => out.push_str(own.trim()),
            }
            level = node.next.as_deref();
        }
        for _ in 0..depth {
            out.push(')');
        }
        out
    }

    /// This level's `lowercase(keyword) ["flags"] "args"`, without the trigger.
    fn dump_own(&self) -> String {
        let mut out = self.keyword.to_lowercase();
        if !self.flags.is_empty() {
            out.push_str(" [");
            for (i, flag) in self.flags.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                push_go_quoted(&mut out, &flag.text);
            }
            out.push(']');
        }
        for arg in &self.args {
            out.push(' ');
            push_go_quoted(&mut out, &arg.text);
        }
        out
    }
}

/// Appends Go's `strconv.Quote` of `s` (valid UTF-8) to `out`.
fn push_go_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_go_printable(c) => out.push(c),
            // Writing to a `String` cannot fail.
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
}

/// An approximation of Go's `unicode.IsPrint`: letters, marks, numbers, punctuation,
/// symbols and the ASCII space. Rust's standard library has no general-category
/// tables, so controls, non-ASCII spaces, format characters, private-use code points
/// and non-characters are excluded explicitly.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    let format = matches!(u,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891 | 0x8e2 | 0x180e
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f
        | 0xfeff | 0xfff9..=0xfffb | 0x110bd | 0x110cd | 0x13430..=0x1343f
        | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f);
    let private_or_nonchar = matches!(u, 0xe000..=0xf8ff | 0xf0000..=0x10ffff)
        || (u & 0xfffe) == 0xfffe
        || (0xfdd0..=0xfdef).contains(&u);
    !(format || private_or_nonchar)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go_quote(s: &str) -> String {
        let mut out = String::new();
        push_go_quoted(&mut out, s);
        out
    }

    #[test]
    fn quoting() {
        assert_eq!(go_quote("a\"b\\"), r#""a\"b\\""#);
        assert_eq!(go_quote("\t\x01\x7f"), r#""\t\x01\x7f""#);
        assert_eq!(go_quote("☃ é"), "\"☃ é\"");
        assert_eq!(go_quote("\u{200b}\u{a0}"), r#""\u200b\u00a0""#);
        assert_eq!(go_quote("\0"), r#""\x00""#);
        assert_eq!(go_quote("\u{10ffff}\u{1f600}"), "\"\\U0010ffff\u{1f600}\"");
    }

    #[test]
    fn whole_file() {
        let src = "# escape=`\nFROM a\nRUN <<EOF\nbody\nEOF\n# comment\nMyCmd x y\n";
        assert_eq!(
            dump(src).unwrap(),
            "(from \"a\")\n(run \"<<EOF\")\n(mycmd \"\")\n"
        );
        assert!(dump("# only a comment\n").is_err());
        assert!(dump("RUN <<EOF\nno terminator\n").is_err());
    }

    #[test]
    fn onbuild_nesting_and_empty_keywords() {
        let out = dump("ONBUILD ONBUILD --x=1 RUN a\nONBUILD\nX\n\\\n").unwrap();
        assert_eq!(
            out,
            "(onbuild (onbuild [\"--x=1\"] (run \"a\")))\n(onbuild)\n(x \"\")\n(\"\")\n"
        );
    }

    #[test]
    fn deep_onbuild_nesting_dumps_without_recursion() {
        let depth = 200;
        let src = format!("{}RUN x\n", "ONBUILD ".repeat(depth));
        let out = dump(&src).unwrap();
        let expected = format!(
            "{}(run \"x\"){}\n",
            "(onbuild ".repeat(depth),
            ")".repeat(depth)
        );
        assert_eq!(out, expected);
    }
}
