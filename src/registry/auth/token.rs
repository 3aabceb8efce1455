//! Bearer tokens from a registry's token server (distribution's "Token Authentication
//! Specification" and its OAuth2 variant).
//!
//! - Anonymous, or with a password: `GET <realm>?service=<service>&scope=<scope>...`, with
//!   `account=<user>` and `Authorization: Basic` when there are credentials. Answers
//!   `{"token": "...", "expires_in": 300, "refresh_token": "..."}` (or the OAuth2 name
//!   `access_token`). At login `offline_token=true&client_id=kiln` asks for a refresh token.
//! - With an identity token (a refresh token from an earlier login): `POST <realm>` with the
//!   form `grant_type=refresh_token&refresh_token=...&service=...&scope=<space-separated>
//!   &client_id=kiln`.
//!
//! Not responsible for: deciding when a token is needed, or caching it (see `auth`, `cache`).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use ureq::http::{Method, Request};
use url::Url;

use super::challenge::Challenge;
use crate::registry::credentials::{Credentials, Secret};
use crate::registry::error::{ApiErrors, RegistryError, Result};
use crate::registry::transport;

/// Token responses are small; anything larger is not a token response.
const TOKEN_RESPONSE_LIMIT: u64 = 1024 * 1024;
/// The lifetime of a token whose response gives none (the specification's default).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// The OAuth2 client id kiln sends.
pub const CLIENT_ID: &str = "kiln";

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// What the token server issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub token: String,
    pub lifetime: Duration,
    /// A refresh token (when asked for with `offline`, or on a refresh grant).
    pub refresh_token: Option<String>,
}

/// A token request.
#[derive(Debug, Clone, Copy)]
pub struct TokenRequest<'a> {
    /// The registry as named in references, for messages.
    pub registry: &'a str,
    pub challenge: &'a Challenge,
    pub scopes: &'a [String],
    pub credentials: Option<&'a Credentials>,
    /// Ask for a refresh token (`kiln login`).
    pub offline: bool,
}

/// The `Authorization` value for Basic authentication.
pub fn basic_authorization(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{username}:{password}"))
    )
}

/// Fetch a token as `request` describes. `agent` is the session's: for an insecure registry
/// the token server's certificate is not verified either (as in Docker).
pub fn fetch(agent: &ureq::Agent, request: &TokenRequest<'_>) -> Result<Issued> {
    let realm = request.challenge.param("realm").unwrap_or_default();
    let registry = request.registry;
    let token_error = |detail: String| RegistryError::Token {
        registry: registry.to_owned(),
        realm: realm.to_owned(),
        detail,
    };
    let mut url =
        Url::parse(realm).map_err(|e| token_error(format!("the realm is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(token_error("the realm is not an http(s) URL".to_owned()));
    }
    let service = request.challenge.param("service");

    let built = match request.credentials {
        Some(Credentials {
            secret: Secret::IdentityToken(refresh),
            ..
        }) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", refresh)
                .append_pair("client_id", CLIENT_ID);
            if let Some(service) = service {
                form.append_pair("service", service);
            }
            if !request.scopes.is_empty() {
                form.append_pair("scope", &request.scopes.join(" "));
            }
            if request.offline {
                form.append_pair("access_type", "offline");
            }
            Request::builder()
                .method(Method::POST)
                .uri(url.as_str())
                .header("accept", "application/json")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form.finish().into_bytes())
        }
        credentials => {
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = service {
                    query.append_pair("service", service);
                }
                for scope in request.scopes {
                    query.append_pair("scope", scope);
                }
                if let Some(c) = credentials
                    && !c.username.is_empty()
                {
                    query.append_pair("account", &c.username);
                }
                if request.offline {
                    query
                        .append_pair("offline_token", "true")
                        .append_pair("client_id", CLIENT_ID);
                }
            }
            let mut builder = Request::builder()
                .method(Method::GET)
                .uri(url.as_str())
                .header("accept", "application/json");
            if let Some(Credentials {
                username,
                secret: Secret::Password(password),
            }) = credentials
            {
                builder = builder.header("authorization", basic_authorization(username, password));
            }
            builder.body(Vec::new())
        }
    };
    let http_request = built.map_err(|e| token_error(e.to_string()))?;
    let method = http_request.method().clone();
    let response = agent
        .run(http_request)
        .map_err(|e| transport::classify(e, &method, &url))?;
    let status = response.status().as_u16();
    let body = transport::read_body(response.into_body(), TOKEN_RESPONSE_LIMIT)
        .map_err(|e| transport::classify(e, &method, &url))?
        .ok_or_else(|| {
            token_error(format!(
                "the response is larger than {TOKEN_RESPONSE_LIMIT} bytes"
            ))
        })?;
    match status {
        200 => {}
        401 | 403 => {
            let errors = ApiErrors::parse(status, &body);
            let detail = oauth_error(&body).unwrap_or_else(|| errors.to_string());
            return Err(match request.credentials {
                Some(c) => RegistryError::CredentialsRejected {
                    registry: registry.to_owned(),
                    who: who(c),
                    detail: format!("the token server {realm} answered: {detail}"),
                },
                None => RegistryError::AuthRequired {
                    registry: registry.to_owned(),
                    detail: format!("the token server {realm} refused anonymous access: {detail}"),
                },
            });
        }
        _ => {
            let detail =
                oauth_error(&body).unwrap_or_else(|| ApiErrors::parse(status, &body).to_string());
            return Err(token_error(format!("HTTP {status}: {detail}")));
        }
    }
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| token_error(format!("the response is not a token response: {e}")))?;
    let token = parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| token_error("the response holds no token".to_owned()))?;
    Ok(Issued {
        token,
        lifetime: parsed
            .expires_in
            .filter(|&s| s > 0)
            .map_or(DEFAULT_LIFETIME, Duration::from_secs),
        refresh_token: parsed.refresh_token.filter(|t| !t.is_empty()),
    })
}

/// How credentials are named in messages: `the password of user alice`, or `the stored
/// identity token`.
pub fn who(credentials: &Credentials) -> String {
    match (&credentials.secret, credentials.username.is_empty()) {
        (Secret::Password(_), true) => "the stored password".to_owned(),
        (Secret::Password(_), false) => format!("the password of user {}", credentials.username),
        (Secret::IdentityToken(_), true) => "the stored identity token".to_owned(),
        (Secret::IdentityToken(_), false) => {
            format!("the identity token of user {}", credentials.username)
        }
    }
}

/// An OAuth2 error body (`{"error": "invalid_grant", "error_description": "..."}`).
fn oauth_error(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct OAuthError {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
    }
    let e: OAuthError = serde_json::from_slice(body).ok()?;
    Some(match e.error_description {
        Some(d) if !d.is_empty() => format!("{}: {d}", e.error),
        _ => e.error,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::challenge;
    use super::*;
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::TcpListener;

    /// A one-request HTTP server on 127.0.0.1: answers `status` with `body` and returns the
    /// request (head and body) it received.
    pub(crate) fn serve_once(
        status: u16,
        body: &'static str,
    ) -> (String, std::thread::JoinHandle<(String, String)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                head.push_str(&line);
            }
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            let mut req_body = vec![0; length];
            reader.read_exact(&mut req_body).unwrap();
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            (head, String::from_utf8(req_body).unwrap())
        });
        (realm, handle)
    }

    fn bearer(realm: &str) -> Challenge {
        challenge::parse(&format!(r#"Bearer realm="{realm}",service="reg svc""#)).remove(0)
    }

    fn scopes() -> Vec<String> {
        vec![
            "repository:team/app:pull,push".to_owned(),
            "repository:base/img:pull".to_owned(),
        ]
    }

    /// `fetch` from the token server at `realm` for `registry`, as the client would.
    fn fetch_from(
        realm: &str,
        registry: &str,
        scopes: &[String],
        credentials: &Credentials,
        offline: bool,
    ) -> Result<Issued> {
        let agent = crate::registry::transport::agent("127.0.0.1", false, true).unwrap();
        fetch(
            &agent,
            &TokenRequest {
                registry,
                challenge: &bearer(realm),
                scopes,
                credentials: Some(credentials),
                offline,
            },
        )
    }

    #[test]
    fn password_grant_is_a_get_with_basic_auth_account_and_every_scope() {
        let (realm, server) = serve_once(200, r#"{"token":"t1","expires_in":300}"#);
        let issued = fetch_from(
            &realm,
            "reg",
            &scopes(),
            &Credentials::password("alice", "s3cret"),
            false,
        )
        .unwrap();
        assert_eq!(
            issued,
            Issued {
                token: "t1".into(),
                lifetime: Duration::from_secs(300),
                refresh_token: None
            }
        );
        let (head, _) = server.join().unwrap();
        let line = head.lines().next().unwrap();
        assert_eq!(
            line,
            "GET /token?service=reg+svc&scope=repository%3Ateam%2Fapp%3Apull%2Cpush&scope=repository%3Abase%2Fimg%3Apull&account=alice HTTP/1.1"
        );
        let expected = format!("authorization: {}", basic_authorization("alice", "s3cret"));
        assert!(
            head.lines().any(|l| l.eq_ignore_ascii_case(&expected)),
            "{head}"
        );
    }

    #[test]
    fn identity_token_is_an_oauth2_refresh_grant() {
        let (realm, server) = serve_once(200, r#"{"access_token":"t2","refresh_token":"r2"}"#);
        let issued = fetch_from(
            &realm,
            "reg",
            &scopes(),
            &Credentials::identity_token("", "refresh-1"),
            false,
        )
        .unwrap();
        assert_eq!(issued.token, "t2");
        assert_eq!(issued.lifetime, DEFAULT_LIFETIME);
        assert_eq!(issued.refresh_token.as_deref(), Some("r2"));
        let (head, body) = server.join().unwrap();
        assert!(head.starts_with("POST /token HTTP/1.1"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("authorization"),
            "{head}"
        );
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("grant_type"), Some("refresh_token"));
        assert_eq!(get("refresh_token"), Some("refresh-1"));
        assert_eq!(get("service"), Some("reg svc"));
        assert_eq!(
            get("scope"),
            Some("repository:team/app:pull,push repository:base/img:pull")
        );
        assert_eq!(get("client_id"), Some(CLIENT_ID));
    }

    #[test]
    fn offline_login_asks_for_a_refresh_token() {
        let (realm, server) = serve_once(200, r#"{"token":"t","refresh_token":"keep-me"}"#);
        let issued = fetch_from(
            &realm,
            "reg",
            &[],
            &Credentials::password("bob", "pw"),
            true,
        )
        .unwrap();
        assert_eq!(issued.refresh_token.as_deref(), Some("keep-me"));
        let (head, _) = server.join().unwrap();
        assert!(
            head.starts_with(
                "GET /token?service=reg+svc&account=bob&offline_token=true&client_id=kiln "
            ),
            "{head}"
        );
    }

    #[test]
    fn rejected_credentials_name_the_registry_and_user() {
        let (realm, server) = serve_once(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
        let err = fetch_from(
            &realm,
            "reg.example:5000",
            &scopes(),
            &Credentials::password("mallory", "wrong"),
            false,
        )
        .unwrap_err();
        server.join().unwrap();
        let text = err.to_string();
        assert!(
            matches!(err, RegistryError::CredentialsRejected { .. }),
            "{err:?}"
        );
        assert!(
            text.contains("reg.example:5000")
                && text.contains("user mallory")
                && text.contains("authentication required"),
            "{text}"
        );
        assert!(!text.contains("wrong"), "{text}");
    }
}
