//! Authentication of one client session against one registry.
//!
//! Registries announce how to authenticate with a `WWW-Authenticate` challenge on a 401 (first
//! seen on `GET /v2/`):
//! - `Bearer`: kiln asks the challenge's token server for a token covering the session's
//!   scopes (`repository:<name>:pull` or `...:pull,push`, any scope the registry names, and
//!   `repository:<source>:pull` for cross-repository mount sources), anonymously or with the
//!   registry's credentials (see `token`), and sends `Authorization: Bearer <token>`. Tokens
//!   are shared by the sessions of the process (see `cache`), renewed when their `expires_in`
//!   has passed, and dropped and fetched again when the registry answers a 401 anyway.
//! - `Basic`: kiln sends the registry's user name and password with every request.
//!
//! Credentials come from a [`CredentialStore`] and are only looked up once a challenge asks
//! for them, so anonymous registries never run a credential helper.
//!
//! Not responsible for: sending the authenticated requests (see `client`), or where
//! credentials are kept (see `credentials`).

mod cache;
pub mod challenge;
pub mod login;
pub mod token;

use std::time::Instant;

use sha2::{Digest as _, Sha256};

use challenge::{AuthScheme, Challenge};
use token::TokenRequest;

use super::credentials::{CredentialStore, Credentials, Secret};
use super::error::{ApiErrors, RegistryError, Result};

/// What a session does with its repository: decides the token scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

impl Access {
    fn actions(self) -> &'static str {
        match self {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        }
    }
}

/// The token scope for `access` to repository `name` (`repository:library/busybox:pull`).
pub fn repository_scope(name: &str, access: Access) -> String {
    format!("repository:{name}:{}", access.actions())
}

/// The outcome of handling a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// New authorization was obtained: send the request again.
    Retry,
    /// Nothing kiln can do; the reason, for the error message.
    Refused(String),
    /// The credentials were sent and refused (see [`Auth::refused`]).
    Rejected,
}

/// Credentials looked up lazily.
#[derive(Debug)]
enum Lookup {
    NotYet(CredentialStore),
    Done(Option<Credentials>),
}

/// The authentication state of one session.
#[derive(Debug)]
pub struct Auth {
    /// The registry as named in references (`docker.io`), for messages and credentials.
    registry: String,
    repository: String,
    scopes: Vec<String>,
    credentials: Lookup,
    /// The most recent Bearer challenge seen, if any.
    bearer: Option<Challenge>,
    /// A Basic challenge was seen: send the password with every request.
    basic: bool,
    token: Option<cache::Token>,
    /// Ask token servers for a refresh token (login).
    offline: bool,
    /// The refresh token a token server issued, if asked for.
    refresh_token: Option<String>,
}

impl Auth {
    /// Authentication for `access` to `repository` of `registry`, with credentials from
    /// `store` when a challenge asks for them.
    pub fn new(registry: &str, repository: &str, access: Access, store: CredentialStore) -> Self {
        Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            scopes: vec![repository_scope(repository, access)],
            credentials: Lookup::NotYet(store),
            bearer: None,
            basic: false,
            token: None,
            offline: false,
            refresh_token: None,
        }
    }

    /// Authentication for `kiln login`: no repository scope, the given credentials, and a
    /// refresh token asked for (Docker's offline token).
    pub fn for_login(registry: &str, credentials: Credentials) -> Self {
        Self {
            registry: registry.to_owned(),
            repository: String::new(),
            scopes: Vec::new(),
            credentials: Lookup::Done(Some(credentials)),
            bearer: None,
            basic: false,
            token: None,
            offline: true,
            refresh_token: None,
        }
    }

    /// Add a scope to the tokens of this session (`repository:<source>:pull` for a
    /// cross-repository mount); the next request fetches a token that covers it.
    pub fn add_scope(&mut self, scope: String) {
        if !self.scopes.contains(&scope) {
            self.scopes.push(scope);
            self.token = None;
        }
    }

    /// The scopes tokens are requested for.
    #[cfg(test)]
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The refresh token a token server issued during login, if any.
    pub fn refresh_token(&self) -> Option<&str> {
        self.refresh_token.as_deref()
    }

    /// The `Authorization` header value to send, if any.
    pub fn authorization(&self) -> Option<String> {
        if self.bearer.is_some()
            && let Some(token) = &self.token
        {
            return Some(format!("Bearer {}", token.value));
        }
        if self.basic
            && let Lookup::Done(Some(Credentials {
                username,
                secret: Secret::Password(password),
            })) = &self.credentials
        {
            return Some(token::basic_authorization(username, password));
        }
        None
    }

    /// Remember the challenges of the API version check (`GET /v2/`), so the first real
    /// request can carry authorization instead of collecting a 401 first.
    pub fn observe(&mut self, challenges: &[Challenge]) {
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == AuthScheme::Bearer) {
            self.bearer = Some(bearer.clone());
        } else if challenges.iter().any(|c| c.scheme == AuthScheme::Basic) {
            self.basic = true;
        }
    }

    /// Before a request: with a Bearer challenge known, make sure there is a fresh token; with
    /// a Basic one, look the credentials up.
    pub fn prepare(&mut self, agent: &ureq::Agent) -> Result<()> {
        let now = Instant::now();
        if self.bearer.is_some() {
            if self.token.as_ref().is_none_or(|t| !t.is_fresh(now)) {
                self.token = Some(self.fetch_token(agent, false)?);
            }
        } else if self.basic {
            self.credentials()?;
        }
        Ok(())
    }

    /// Handle a 401 with these challenges: get new authorization if that can help.
    pub fn renew(&mut self, agent: &ureq::Agent, challenges: &[Challenge]) -> Result<Renewal> {
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == AuthScheme::Bearer) {
            return self.renew_bearer(agent, bearer);
        }
        if challenges.iter().any(|c| c.scheme == AuthScheme::Basic) {
            let already_sent = self.basic && self.authorization().is_some();
            self.basic = true;
            return Ok(match self.credentials()? {
                Some(_) if already_sent => Renewal::Rejected,
                Some(Credentials {
                    secret: Secret::Password(_),
                    ..
                }) => Renewal::Retry,
                Some(_) => Renewal::Refused(
                    "the registry asks for a username and password, and kiln has only an identity token for it"
                        .to_owned(),
                ),
                None => Renewal::Refused(format!(
                    "the registry asks for a username and password, and kiln has no credentials for it (run `kiln login {}`)",
                    self.registry
                )),
            });
        }
        Ok(Renewal::Refused(format!(
            "{} to {} was refused",
            self.describe_access(),
            self.repository
        )))
    }

    /// The error for a request still refused (401) after authorization was renewed.
    pub fn refused(&self, errors: &ApiErrors) -> RegistryError {
        match &self.credentials {
            Lookup::Done(Some(c)) => RegistryError::CredentialsRejected {
                registry: self.registry.clone(),
                who: token::who(c),
                detail: if self.bearer.is_some() {
                    format!(
                        "the token issued for them does not grant access to {}: {errors}",
                        self.repository
                    )
                } else {
                    errors.to_string()
                },
            },
            _ => RegistryError::AuthRequired {
                registry: self.registry.clone(),
                detail: format!(
                    "anonymous access to {} was refused (if it needs credentials, run `kiln login {}`): {errors}",
                    self.repository, self.registry
                ),
            },
        }
    }

    fn renew_bearer(&mut self, agent: &ureq::Agent, bearer: &Challenge) -> Result<Renewal> {
        let mut new_scope = false;
        for scope in bearer
            .param("scope")
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
        {
            if !self.scopes.iter().any(|s| s == scope) {
                self.scopes.push(scope.to_owned());
                new_scope = true;
            }
        }
        let insufficient = bearer.param("error") == Some("insufficient_scope");
        if self.token.is_some() && insufficient && !new_scope {
            // A token for exactly this scope was already refused: asking again gives the same
            // token.
            let access = self.describe_access();
            return Ok(Renewal::Refused(format!(
                "{access} to {} was refused (the repository may not exist, or {})",
                self.repository,
                if access == "anonymous access" {
                    "may need credentials"
                } else {
                    "the credentials may not grant this access"
                }
            )));
        }
        if let Some(refused) = self.token.take()
            && let Some(old) = &self.bearer
        {
            // The registry refused this token (expired early, revoked): never hand it out again.
            let key = self.cache_key(old);
            if cache::get(&key, Instant::now()).is_some_and(|t| t.value == refused.value) {
                cache::forget(&key);
            }
        }
        self.bearer = Some(bearer.clone());
        self.token = Some(self.fetch_token(agent, true)?);
        Ok(Renewal::Retry)
    }

    /// A token for the current scopes: from the cache unless `fresh`, else from the server.
    fn fetch_token(&mut self, agent: &ureq::Agent, fresh: bool) -> Result<cache::Token> {
        let bearer = self
            .bearer
            .clone()
            .expect("fetch_token is only called with a Bearer challenge");
        self.credentials()?;
        let key = self.cache_key(&bearer);
        let now = Instant::now();
        if !fresh
            && !self.offline
            && let Some(token) = cache::get(&key, now)
        {
            return Ok(token);
        }
        let credentials = match &self.credentials {
            Lookup::Done(c) => c.as_ref(),
            Lookup::NotYet(_) => None,
        };
        let issued = token::fetch(
            agent,
            &TokenRequest {
                registry: &self.registry,
                challenge: &bearer,
                scopes: &self.scopes,
                credentials,
                offline: self.offline,
            },
        )?;
        if self.offline {
            self.refresh_token = issued.refresh_token.clone();
        }
        let token = cache::Token::new(issued.token, issued.lifetime, now);
        cache::put(key, token.clone());
        Ok(token)
    }

    fn cache_key(&self, bearer: &Challenge) -> cache::Key {
        let identity = match &self.credentials {
            Lookup::Done(Some(c)) => {
                let secret = match &c.secret {
                    Secret::Password(p) => format!("password:{p}"),
                    Secret::IdentityToken(t) => format!("token:{t}"),
                };
                format!(
                    "{}:{}",
                    c.username,
                    hex::encode(Sha256::digest(secret.as_bytes()))
                )
            }
            _ => String::new(),
        };
        cache::Key {
            realm: bearer.param("realm").unwrap_or_default().to_owned(),
            service: bearer.param("service").unwrap_or_default().to_owned(),
            scopes: self.scopes.iter().cloned().collect(),
            identity,
        }
    }

    /// The credentials for the registry, looked up on first use.
    fn credentials(&mut self) -> Result<Option<&Credentials>> {
        if let Lookup::NotYet(store) = &self.credentials {
            let found = store
                .get(&self.registry)
                .map_err(|source| RegistryError::Credentials {
                    registry: self.registry.clone(),
                    source,
                })?;
            self.credentials = Lookup::Done(found);
        }
        Ok(match &self.credentials {
            Lookup::Done(c) => c.as_ref(),
            Lookup::NotYet(_) => None,
        })
    }

    fn describe_access(&self) -> &'static str {
        match &self.credentials {
            Lookup::Done(Some(_)) => "authenticated access",
            _ => "anonymous access",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_credentials() -> CredentialStore {
        CredentialStore::new("/nonexistent/kiln-test/config.json", None)
    }

    #[test]
    fn scopes_follow_access_and_mount_sources() {
        let auth = Auth::new(
            "docker.io",
            "library/busybox",
            Access::Pull,
            no_credentials(),
        );
        assert_eq!(auth.scopes(), ["repository:library/busybox:pull"]);
        let mut auth = Auth::new("docker.io", "me/app", Access::Push, no_credentials());
        assert_eq!(auth.scopes(), ["repository:me/app:pull,push"]);
        assert_eq!(auth.authorization(), None);
        auth.add_scope(repository_scope("library/base", Access::Pull));
        auth.add_scope(repository_scope("library/base", Access::Pull));
        assert_eq!(
            auth.scopes(),
            [
                "repository:me/app:pull,push",
                "repository:library/base:pull"
            ]
        );
    }

    #[test]
    fn basic_challenge_sends_the_password_once_then_gives_up() {
        let agent = crate::registry::transport::agent("127.0.0.1", false, true).unwrap();
        let basic = challenge::parse(r#"Basic realm="x""#);
        let mut auth = Auth::for_login("reg.example", Credentials::password("u", "p"));
        assert_eq!(auth.renew(&agent, &basic).unwrap(), Renewal::Retry);
        assert_eq!(
            auth.authorization().as_deref(),
            Some(token::basic_authorization("u", "p").as_str())
        );
        assert_eq!(auth.renew(&agent, &basic).unwrap(), Renewal::Rejected);
        assert_eq!(
            auth.refused(&ApiErrors::parse(401, b"")).to_string(),
            "registry reg.example rejected the password of user u: HTTP 401"
        );
        let mut token_only = Auth::for_login("reg.example", Credentials::identity_token("", "t"));
        assert!(matches!(
            token_only.renew(&agent, &basic).unwrap(),
            Renewal::Refused(r) if r.contains("only an identity token")
        ));
    }

    #[test]
    fn observed_basic_challenge_authorizes_the_first_request() {
        let agent = crate::registry::transport::agent("127.0.0.1", false, true).unwrap();
        let mut auth = Auth::for_login("reg.example", Credentials::password("u", "p"));
        auth.observe(&challenge::parse(r#"Basic realm="Registry Realm""#));
        auth.prepare(&agent).unwrap();
        assert!(auth.authorization().unwrap().starts_with("Basic "));
    }

    #[test]
    fn basic_only_or_no_challenge_without_credentials_is_refused_without_requests() {
        let agent = crate::registry::transport::agent("127.0.0.1", false, true).unwrap();
        let mut auth = Auth::new("reg.example", "app", Access::Pull, no_credentials());
        let basic = challenge::parse(r#"Basic realm="x""#);
        match auth.renew(&agent, &basic).unwrap() {
            Renewal::Refused(reason) => {
                assert!(reason.contains("username and password"), "{reason}");
                assert!(reason.contains("kiln login reg.example"), "{reason}");
            }
            other => panic!("basic auth cannot be answered anonymously: {other:?}"),
        }
        match auth.renew(&agent, &[]).unwrap() {
            Renewal::Refused(reason) => assert_eq!(reason, "anonymous access to app was refused"),
            other => panic!("no challenge, nothing to retry: {other:?}"),
        }
    }

    #[test]
    fn refused_scope_is_not_retried_forever() {
        let agent = crate::registry::transport::agent("127.0.0.1", false, true).unwrap();
        let mut auth = Auth::new("docker.io", "library/nope", Access::Pull, no_credentials());
        auth.token = Some(cache::Token::new(
            "anonymous".into(),
            token::DEFAULT_LIFETIME,
            Instant::now(),
        ));
        let c = challenge::parse(
            r#"Bearer realm="https://auth.invalid/token",service="s",scope="repository:library/nope:pull",error="insufficient_scope""#,
        );
        assert!(matches!(
            auth.renew(&agent, &c).unwrap(),
            Renewal::Refused(_)
        ));
    }

    #[test]
    fn refused_tokens_are_dropped_and_stale_ones_renewed() {
        use std::time::Duration;
        let agent = crate::registry::transport::agent("127.0.0.1", false, true).unwrap();
        let (realm, server) = token::tests::serve_once(200, r#"{"token":"second"}"#);
        let c = challenge::parse(&format!(
            r#"Bearer realm="{realm}",service="s",error="invalid_token""#
        ));
        let mut auth = Auth::new("reg", "app", Access::Pull, no_credentials());
        auth.observe(&c);
        let key = auth.cache_key(&c[0]);
        let now = Instant::now();
        cache::put(
            key.clone(),
            cache::Token::new("first".into(), Duration::from_secs(60), now),
        );
        // From the cache: no request.
        auth.prepare(&agent).unwrap();
        assert_eq!(auth.authorization().as_deref(), Some("Bearer first"));
        // The registry refuses it: dropped, and a new one fetched.
        assert_eq!(auth.renew(&agent, &c).unwrap(), Renewal::Retry);
        assert_eq!(auth.authorization().as_deref(), Some("Bearer second"));
        assert_eq!(cache::get(&key, now).unwrap().value, "second");
        server.join().unwrap();

        // A token past its lifetime is not sent: prepare fetches another.
        let (realm, server) = token::tests::serve_once(200, r#"{"token":"third"}"#);
        let c = challenge::parse(&format!(r#"Bearer realm="{realm}",service="s""#));
        let mut auth = Auth::new("reg", "app", Access::Pull, no_credentials());
        auth.observe(&c);
        auth.token = Some(cache::Token::new(
            "expired".into(),
            Duration::from_secs(1),
            now.checked_sub(Duration::from_secs(5)).unwrap_or(now),
        ));
        auth.prepare(&agent).unwrap();
        assert_eq!(auth.authorization().as_deref(), Some("Bearer third"));
        server.join().unwrap();
    }

    #[test]
    fn credentials_come_from_the_store_lazily() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        let store = CredentialStore::new(&file, None);
        let mut auth = Auth::new("reg.example:5000", "app", Access::Pull, store.clone());
        // Stored after the session was made: still found, since nothing was looked up yet.
        store
            .store("reg.example:5000", &Credentials::password("late", "pw"))
            .unwrap();
        let agent = crate::registry::transport::agent("127.0.0.1", false, true).unwrap();
        auth.observe(&challenge::parse(r#"Basic realm="x""#));
        auth.prepare(&agent).unwrap();
        assert_eq!(
            auth.authorization(),
            Some(token::basic_authorization("late", "pw"))
        );
    }
}
