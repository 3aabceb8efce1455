//! BuildKit's AST dump format, for conformance tests and `--debug` output.
//!
//! Responsible for: rendering a [`Node`] as `(name ["--flag"] "arg" ...)` with Go's
//! `strconv.Quote` rules, byte for byte as BuildKit's `Node.Dump()` does.
//! Not responsible for: anything typed; this is the syntax-level view only.

use crate::syntax::Node;

impl Node {
    /// One line of BuildKit's dump, e.g. `(copy ["--from=a"] "x" "/y")`.
    pub fn dump(&self) -> String {
        // BuildKit trims the node's text, so an empty keyword leaves no leading space.
        let mut out = self.keyword.to_lowercase();
        if !self.flags.is_empty() {
            let flags: Vec<String> = self.flags.iter().map(|f| go_quote(&f.text)).collect();
            out.push_str(" [");
            out.push_str(&flags.join(" "));
            out.push(']');
        }
        for arg in &self.args {
            out.push(' ');
            out.push_str(&go_quote(&arg.text));
        }
        if let Some(next) = &self.next {
            out.push(' ');
            out.push_str(&next.dump());
        }
        format!("({})", out.trim())
    }
}

/// Go's `strconv.Quote` for valid UTF-8.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
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
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
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

    #[test]
    fn quoting() {
        assert_eq!(go_quote("a\"b\\"), r#""a\"b\\""#);
        assert_eq!(go_quote("\t\x01\x7f"), r#""\t\x01\x7f""#);
        assert_eq!(go_quote("☃ é"), "\"☃ é\"");
        assert_eq!(go_quote("\u{200b}\u{a0}"), r#""\u200b\u00a0""#);
        assert_eq!(go_quote("\0"), r#""\x00""#);
    }
}
