//! Bearer tokens from a registry's token server (Docker's "Token Authentication Specification"):
//! `GET <realm>?service=<service>&scope=<scope>...` answers `{"token": "..."}` (or the OAuth2
//! name `access_token`).
//!
//! The request is anonymous: that is all public registries need to pull. Credentials (basic
//! auth on this request, or the OAuth2 `POST` form with a refresh token) are added here when
//! kiln reads credential files (issue [F]).
//!
//! Not responsible for: deciding when a token is needed, or caching it (see `auth`).

use serde::Deserialize;
use ureq::http::{Method, Request};
use url::Url;

use super::challenge::Challenge;
use crate::registry::error::{ApiErrors, RegistryError, Result};
use crate::registry::transport;

/// Token responses are small; anything larger is not a token response.
const TOKEN_RESPONSE_LIMIT: u64 = 1024 * 1024;

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// Fetch an anonymous token for `scopes` as a Bearer `challenge` describes.
/// `registry` is only used in error messages. `agent` is the session's: for an insecure
/// registry the token server's certificate is not verified either (as in Docker); that is safe
/// only because no credentials are sent.
pub fn fetch_anonymous(
    agent: &ureq::Agent,
    registry: &str,
    challenge: &Challenge,
    scopes: &[String],
) -> Result<String> {
    let realm = challenge.param("realm").unwrap_or_default();
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
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = challenge.param("service") {
            query.append_pair("service", service);
        }
        for scope in scopes {
            query.append_pair("scope", scope);
        }
    }

    let request = Request::builder()
        .method(Method::GET)
        .uri(url.as_str())
        .header("accept", "application/json")
        .body(())
        .map_err(|e| token_error(e.to_string()))?;
    let response = agent
        .run(request)
        .map_err(|e| transport::classify(e, &Method::GET, &url))?;
    let status = response.status().as_u16();
    let body = transport::read_body(response.into_body(), TOKEN_RESPONSE_LIMIT)
        .map_err(|e| transport::classify(e, &Method::GET, &url))?
        .ok_or_else(|| {
            token_error(format!(
                "the response is larger than {TOKEN_RESPONSE_LIMIT} bytes"
            ))
        })?;
    match status {
        200 => {}
        401 | 403 => {
            let errors = ApiErrors::parse(status, &body);
            return Err(RegistryError::AuthRequired {
                registry: registry.to_owned(),
                detail: format!("the token server {realm} refused anonymous access: {errors}"),
            });
        }
        _ => {
            return Err(token_error(format!(
                "HTTP {status}: {}",
                ApiErrors::parse(status, &body)
            )));
        }
    }
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| token_error(format!("the response is not a token response: {e}")))?;
    parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| token_error("the response holds no token".to_owned()))
}
