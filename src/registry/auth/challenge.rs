//! Parsing of `WWW-Authenticate` headers (RFC 9110 §11.6.1):
//! `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="..."`.
//!
//! One header may hold several challenges (`Basic realm="x", Bearer realm="y"`), and a
//! response may carry several headers. Parameter names are case-insensitive; values are tokens
//! or quoted strings with `\` escapes. Malformed input never panics: whatever parses is kept.
//!
//! Not responsible for: acting on a challenge (see `auth`).

/// The authentication scheme of a challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthScheme {
    Bearer,
    Basic,
    Other(String),
}

/// One challenge: a scheme and its parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: AuthScheme,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse every challenge of every `WWW-Authenticate` value, in order.
pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    values.into_iter().flat_map(parse).collect()
}

/// Parse the challenges in one header value.
pub fn parse(value: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: value.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip(|b| b == b',' || is_space(b));
        if p.peek().is_none() {
            break;
        }
        let scheme = p.token();
        if scheme.is_empty() {
            // Not a token where a scheme should be: skip the byte so malformed input cannot
            // stall the parser.
            p.i += 1;
            continue;
        }
        let mut challenge = Challenge {
            scheme: scheme_of(scheme),
            params: Vec::new(),
        };
        p.params(&mut challenge.params);
        out.push(challenge);
    }
    out
}

fn scheme_of(token: &str) -> AuthScheme {
    if token.eq_ignore_ascii_case("bearer") {
        AuthScheme::Bearer
    } else if token.eq_ignore_ascii_case("basic") {
        AuthScheme::Basic
    } else {
        AuthScheme::Other(token.to_owned())
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip(&mut self, pred: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&pred) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> &'a str {
        let start = self.i;
        self.skip(is_tchar);
        // tchars are ASCII, so this slice is valid UTF-8.
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default()
    }

    /// Parameters `name=value` separated by commas, up to the next challenge (a token that is
    /// not followed by `=`) or the end. A token68 (`Negotiate abc==`) is skipped.
    fn params(&mut self, params: &mut Vec<(String, String)>) {
        loop {
            self.skip(|b| b == b',' || is_space(b));
            let start = self.i;
            let name = self.token();
            if name.is_empty() {
                // Not a parameter: a token68 tail or garbage; skip to the next comma.
                self.skip(|b| b != b',');
                if self.peek().is_none() || start == self.i {
                    return;
                }
                continue;
            }
            self.skip(is_space);
            if self.peek() != Some(b'=') {
                // The next challenge's scheme: leave it for the caller.
                self.i = start;
                return;
            }
            self.i += 1;
            self.skip(is_space);
            let value = if self.peek() == Some(b'"') {
                self.quoted()
            } else {
                self.bare_value()
            };
            params.push((name.to_ascii_lowercase(), value));
        }
    }

    /// An unquoted value. RFC 9110 allows only a token, but registries are known to send
    /// unquoted URLs (`realm=https://...`), so it runs to the next comma or space.
    fn bare_value(&mut self) -> String {
        let start = self.i;
        self.skip(|b| b != b',' && !is_space(b));
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    /// A quoted string starting at `"`; `\x` stands for `x`. An unterminated string runs to the
    /// end of the input.
    fn quoted(&mut self) -> String {
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        out.push(escaped);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer_challenge() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, AuthScheme::Bearer);
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("SERVICE"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull"));
        assert_eq!(c[0].param("error"), None);
    }

    #[test]
    fn several_challenges_tokens_and_escapes() {
        let c = parse(
            r#"Basic realm="Registry \"Realm\"", bearer realm=https://a.example/t, service = "svc" ,error="insufficient_scope""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, AuthScheme::Basic);
        assert_eq!(c[0].param("realm"), Some(r#"Registry "Realm""#));
        assert_eq!(c[1].scheme, AuthScheme::Bearer);
        assert_eq!(c[1].param("realm"), Some("https://a.example/t"));
        assert_eq!(c[1].param("service"), Some("svc"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn several_headers_and_token68() {
        let c = parse_all(["Negotiate abc==", r#"Bearer realm="r""#]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, AuthScheme::Other("Negotiate".into()));
        assert_eq!(c[1].param("realm"), Some("r"));
    }

    #[test]
    fn malformed_input_terminates() {
        for s in [
            "",
            ",,,",
            "Bearer",
            "Bearer realm=",
            r#"Bearer realm="unterminated"#,
            "=\"x\"",
            "Bearer ===",
            "\"\"\"",
            "Bearer a=b,,=,c",
            "@@@ Bearer realm=x",
            "Basic \u{e9}",
        ] {
            let _ = parse(s);
        }
        assert_eq!(
            parse(r#"Bearer realm="unterminated"#)[0].param("realm"),
            Some("unterminated")
        );
        assert_eq!(parse("Bearer")[0].scheme, AuthScheme::Bearer);
    }
}
