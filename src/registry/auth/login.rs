//! `login`: check credentials against a registry the way it will be used (`GET /v2/` with the
//! challenge flow: Basic credentials, or a token from its token server), before they are
//! stored.
//!
//! Not responsible for: storing the credentials (see `credentials`) or prompting for them.

use ureq::http::Method;

use crate::registry::RegistryOptions;
use crate::registry::client::{self, Call, Client, Subject};
use crate::registry::credentials::Credentials;
use crate::registry::endpoint;
use crate::registry::error::Result;

/// What a successful login learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOutcome {
    /// A refresh token the registry's token server issued for these credentials: Docker stores
    /// it (as `identitytoken`) instead of the password.
    pub identity_token: Option<String>,
}

/// Check `credentials` against `registry` (a reference's domain: `docker.io`,
/// `localhost:5000`). Fails with [`RegistryError::CredentialsRejected`](
/// crate::registry::RegistryError::CredentialsRejected) when the registry or its token server
/// refuses them.
pub fn login(
    registry: &str,
    credentials: &Credentials,
    opts: &RegistryOptions,
) -> Result<LoginOutcome> {
    let client = Client::connect_login(registry, credentials.clone(), opts)?;
    let url = client.url(endpoint::ping_url(client.base()), "the API version check")?;
    let response = client.send(&Call::new(Method::GET, url))?;
    if !response.status().is_success() {
        return Err(client.status_error(
            &format!("logging in to {registry}"),
            Subject::Other,
            response,
        ));
    }
    client::drain(response);
    Ok(LoginOutcome {
        identity_token: client.refresh_token(),
    })
}
