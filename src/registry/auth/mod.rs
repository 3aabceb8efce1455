//! Authentication of one client session against one registry repository.
//!
//! Registries announce how to authenticate with a `WWW-Authenticate` challenge on a 401 (first
//! seen on `GET /v2/`). For a `Bearer` challenge, kiln asks the challenge's token server for a
//! token covering the session's scope (`repository:<name>:pull` or `...:pull,push`, plus any
//! scope the registry names) and retries with `Authorization: Bearer <token>`.
//!
//! Today tokens are requested anonymously, which is what public registries need. Credentials
//! (`~/.docker/config.json`, credential helpers, `Basic` challenges, identity tokens) belong here
//! and in `token` when issue [F] adds them; callers only see [`Auth::authorization`] and
//! [`Auth::renew`], so they will not change.
//!
//! Not responsible for: sending the authenticated requests (see `client`).

pub mod challenge;
pub mod token;

use challenge::{AuthScheme, Challenge};

use super::error::Result;

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

/// The outcome of handling a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// New authorization was obtained: send the request again.
    Retry,
    /// Nothing kiln can do without credentials; the reason, for the error message.
    Refused(String),
}

/// The authentication state of one session.
#[derive(Debug)]
pub struct Auth {
    /// The registry as named in references (`docker.io`), for messages.
    registry: String,
    repository: String,
    scopes: Vec<String>,
    /// The most recent Bearer challenge seen, if any.
    bearer: Option<Challenge>,
    token: Option<String>,
}

impl Auth {
    pub fn new(registry: &str, repository: &str, access: Access) -> Self {
        Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            scopes: vec![format!("repository:{repository}:{}", access.actions())],
            bearer: None,
            token: None,
        }
    }

    /// The `Authorization` header value to send, if any.
    pub fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    /// Remember the challenges of the API version check (`GET /v2/`), so the first real
    /// request can carry a token instead of collecting a 401 first.
    pub fn observe(&mut self, challenges: &[Challenge]) {
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == AuthScheme::Bearer) {
            self.bearer = Some(bearer.clone());
        }
    }

    /// Before a request: fetch a token if a Bearer challenge is known and there is no token yet.
    pub fn prepare(&mut self, agent: &ureq::Agent) -> Result<()> {
        if self.token.is_none()
            && let Some(bearer) = &self.bearer
        {
            self.token = Some(token::fetch_anonymous(
                agent,
                &self.registry,
                bearer,
                &self.scopes,
            )?);
        }
        Ok(())
    }

    /// Handle a 401 with these challenges: get a (new) token if that can help.
    pub fn renew(&mut self, agent: &ureq::Agent, challenges: &[Challenge]) -> Result<Renewal> {
        let Some(bearer) = challenges.iter().find(|c| c.scheme == AuthScheme::Bearer) else {
            let reason = if challenges.iter().any(|c| c.scheme == AuthScheme::Basic) {
                "the registry asks for a username and password, and kiln has no credentials for it"
                    .to_owned()
            } else {
                format!("anonymous access to {} was refused", self.repository)
            };
            return Ok(Renewal::Refused(reason));
        };
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
            // An anonymous token for exactly this scope was already refused: asking again
            // gives the same token.
            return Ok(Renewal::Refused(format!(
                "anonymous access to {} was refused (the repository may not exist, or may need credentials)",
                self.repository
            )));
        }
        self.bearer = Some(bearer.clone());
        self.token = Some(token::fetch_anonymous(
            agent,
            &self.registry,
            bearer,
            &self.scopes,
        )?);
        Ok(Renewal::Retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_access() {
        let auth = Auth::new("docker.io", "library/busybox", Access::Pull);
        assert_eq!(auth.scopes, vec!["repository:library/busybox:pull"]);
        let auth = Auth::new("docker.io", "me/app", Access::Push);
        assert_eq!(auth.scopes, vec!["repository:me/app:pull,push"]);
        assert_eq!(auth.authorization(), None);
    }

    #[test]
    fn basic_only_or_no_challenge_is_refused_without_requests() {
        let agent = crate::registry::transport::agent(true);
        let mut auth = Auth::new("reg.example", "app", Access::Pull);
        let basic = challenge::parse(r#"Basic realm="x""#);
        match auth.renew(&agent, &basic).unwrap() {
            Renewal::Refused(reason) => {
                assert!(reason.contains("username and password"), "{reason}")
            }
            Renewal::Retry => panic!("basic auth cannot be answered anonymously"),
        }
        match auth.renew(&agent, &[]).unwrap() {
            Renewal::Refused(reason) => assert_eq!(reason, "anonymous access to app was refused"),
            Renewal::Retry => panic!("no challenge, nothing to retry"),
        }
    }

    #[test]
    fn refused_scope_is_not_retried_forever() {
        let agent = crate::registry::transport::agent(true);
        let mut auth = Auth::new("docker.io", "library/nope", Access::Pull);
        auth.token = Some("anonymous".into());
        let c = challenge::parse(
            r#"Bearer realm="https://auth.invalid/token",service="s",scope="repository:library/nope:pull",error="insufficient_scope""#,
        );
        assert!(matches!(
            auth.renew(&agent, &c).unwrap(),
            Renewal::Refused(_)
        ));
    }
}
