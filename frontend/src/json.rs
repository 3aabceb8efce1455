//! The JSON (exec) form of instruction arguments: `["executable", "arg"]`.
//!
//! Responsible for: BuildKit's test for the JSON form — the text starts with `[` and is
//! a valid JSON document; if it is not, the shell form is used with no error; if it is
//! valid JSON but an element is not a string, that is an error — and the byte range of
//! every element so diagnostics can point at it.
//! Not responsible for: choosing which instructions accept the JSON form (`syntax`).

/// What the arguments text turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum JsonArray {
    /// Not a JSON array: use the shell (or split) form.
    NotJson,
    /// A valid JSON array with an element that is not a string, at `start..end`.
    NotStrings { start: usize, end: usize },
    /// The decoded strings with the byte ranges of their literals in the text.
    Strings(Vec<(String, usize, usize)>),
}

/// Reads `text` (already trimmed) as a JSON array of strings.
pub(crate) fn parse(text: &str) -> JsonArray {
    if !text.starts_with('[') {
        return JsonArray::NotJson;
    }
    if serde_json::from_str::<Vec<serde_json::Value>>(text).is_err() {
        return JsonArray::NotJson;
    }
    // The text is a valid JSON array, so a shallow scan finds its elements.
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 1;
    loop {
        i = skip_ws(bytes, i);
        match bytes.get(i) {
            Some(b']') | None => break,
            Some(b',') => {
                i += 1;
                continue;
            }
            Some(b'"') => {
                let end = string_end(bytes, i);
                let Ok(value) = serde_json::from_str::<String>(&text[i..end]) else {
                    return JsonArray::NotJson;
                };
                out.push((value, i, end));
                i = end;
            }
            Some(_) => {
                let end = value_end(bytes, i);
                return JsonArray::NotStrings { start: i, end };
            }
        }
    }
    JsonArray::Strings(out)
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `bytes[start]` is `"`; returns the offset just past the closing quote.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The end of the JSON value starting at `start` (a number, literal, array or object).
fn value_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i = string_end(bytes, i);
                if depth == 0 {
                    return i;
                }
                continue;
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            b',' | b']' | b'}' if depth == 0 => return i,
            b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => return i,
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse("echo [x]"), JsonArray::NotJson);
        assert_eq!(parse("['a']"), JsonArray::NotJson);
        assert_eq!(parse("[\"a\"] b"), JsonArray::NotJson);
        assert_eq!(parse("[\"a\",]"), JsonArray::NotJson);
        assert_eq!(parse("[ ]"), JsonArray::Strings(vec![]));
        assert_eq!(
            parse(r#"["a\"b", "\u2603"]"#),
            JsonArray::Strings(vec![("a\"b".into(), 1, 7), ("☃".into(), 9, 17)])
        );
        assert_eq!(
            parse(r#"["a", [1, 2]]"#),
            JsonArray::NotStrings { start: 6, end: 12 }
        );
        assert_eq!(
            parse(r#"["a", null]"#),
            JsonArray::NotStrings { start: 6, end: 10 }
        );
    }
}
