//! A session with one repository of one registry: finds the endpoint (scheme) that answers the
//! API version check, sends requests with authorization (renewing it once on a 401), and turns
//! unexpected HTTP statuses into [`RegistryError`]s carrying the registry's error codes.
//!
//! Not responsible for: what the requests mean (see `pull`, `push`, `manifest`), scheme policy
//! (see `endpoint`) or how tokens are obtained (see `auth`).

use std::io::Read;
use std::sync::{Mutex, MutexGuard, PoisonError};

use snapshotter::Digest;
use ureq::SendBody;
use ureq::http::{self, Method};
use url::Url;

use super::RegistryOptions;
use super::auth::challenge::{self, Challenge};
use super::auth::{self, Access, Auth, Renewal};
use super::credentials::Credentials;
use super::endpoint::{self, Scheme};
use super::error::{ApiErrors, RegistryError, Result};
use super::transport;
use crate::image::ImageRef;

/// Error bodies are short JSON documents; more than this is not worth reading.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// The body of a request.
pub enum RequestBody<'a> {
    None,
    Bytes(&'a [u8]),
    /// A body streamed from a reader, opened anew for each attempt (a request may be sent
    /// again after authorization was renewed). Sent with `Content-Length: size`.
    Stream {
        size: u64,
        open: &'a dyn Fn() -> Result<Box<dyn Read + 'a>>,
    },
}

/// One request to the registry.
pub struct Call<'a> {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(&'static str, String)>,
    pub body: RequestBody<'a>,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, url: Url) -> Self {
        Self {
            method,
            url,
            headers: Vec::new(),
            body: RequestBody::None,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: RequestBody<'a>) -> Self {
        self.body = body;
        self
    }
}

/// What an unexpected status was about, to pick the error variant.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A manifest, by the reference shown to the user (`localhost:5000/foo:latest`).
    Manifest(&'a str),
    Blob(&'a Digest),
    Other,
}

/// A session with one repository.
pub struct Client {
    /// The registry as named in references (`docker.io`).
    registry: String,
    /// The API host (`registry-1.docker.io`).
    host: String,
    /// The repository path in the registry (`library/busybox`).
    name: String,
    /// The repository as shown to users (`busybox`, `localhost:5000/app`).
    repository: String,
    base: Url,
    agent: ureq::Agent,
    auth: Mutex<Auth>,
}

impl Client {
    /// Open a session for `reference`'s repository: try the endpoint candidates in order and
    /// keep the first that answers `GET /v2/` at all (any HTTP status), remembering its
    /// authentication challenge.
    pub fn connect(reference: &ImageRef, access: Access, opts: &RegistryOptions) -> Result<Self> {
        let registry = reference.domain();
        let auth = Auth::new(registry, reference.path(), access, opts.credentials.clone());
        Self::open(
            registry,
            reference.path(),
            reference.familiar_repository(),
            auth,
            opts,
        )
    }

    /// Open a session with `registry` itself (no repository) to check `credentials` (`kiln
    /// login`); token servers are asked for a refresh token.
    pub fn connect_login(
        registry: &str,
        credentials: Credentials,
        opts: &RegistryOptions,
    ) -> Result<Self> {
        let auth = Auth::for_login(registry, credentials);
        Self::open(registry, "", String::new(), auth, opts)
    }

    fn open(
        registry: &str,
        name: &str,
        repository: String,
        mut auth: Auth,
        opts: &RegistryOptions,
    ) -> Result<Self> {
        let host = endpoint::api_host(registry);
        let declared_insecure = opts.tls_verify.is_none()
            && super::config::Registries::load()?.contains(endpoint::api_host(registry));
        let security = endpoint::security(registry, opts.tls_verify, declared_insecure);
        let mut last_error = None;
        for &scheme in endpoint::candidates(security) {
            let verify = matches!(scheme, Scheme::Https { verify: true });
            let https = matches!(scheme, Scheme::Https { .. });
            let agent = transport::agent(host, https, verify)?;
            let base =
                endpoint::base_url(scheme, host).map_err(|e| bad_url(host, "the API base", e))?;
            match ping(&agent, &base) {
                Ok(challenges) => {
                    auth.observe(&challenges);
                    return Ok(Self {
                        registry: registry.to_owned(),
                        host: host.to_owned(),
                        name: name.to_owned(),
                        repository,
                        base,
                        agent,
                        auth: Mutex::new(auth),
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("every security level has at least one candidate scheme"))
    }

    /// Ask for tokens that may also pull from repository `source` of the same registry (the
    /// source of a cross-repository blob mount).
    pub fn add_mount_source(&self, source: &str) {
        self.auth()
            .add_scope(auth::repository_scope(source, Access::Pull));
    }

    /// The refresh token a token server issued to a login session, if any.
    pub fn refresh_token(&self) -> Option<String> {
        self.auth().refresh_token().map(str::to_owned)
    }

    /// The API base URL that answered (`http://127.0.0.1:5000/`).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The repository path in the registry (`library/busybox`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The repository as shown to users.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The API host, as shown in messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Turn a URL-building failure into an error naming this registry.
    pub fn url(&self, built: Result<Url, url::ParseError>, what: &str) -> Result<Url> {
        built.map_err(|e| bad_url(&self.host, what, e))
    }

    /// Send a request, with authorization; on a 401, renew authorization once and send it
    /// again. Any other status is returned to the caller to interpret.
    pub fn send(&self, call: &Call<'_>) -> Result<http::Response<ureq::Body>> {
        self.auth().prepare(&self.agent)?;
        let mut renewed = false;
        loop {
            let authorization = self.auth().authorization();
            let response = self.send_once(call, authorization.as_deref())?;
            if response.status() != http::StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let challenges = challenges_of(&response);
            let errors = self.error_body(response);
            if renewed {
                return Err(self.auth().refused(&errors));
            }
            // Bound first: the guard must be released before `refused` locks again.
            let renewal = self.auth().renew(&self.agent, &challenges)?;
            match renewal {
                Renewal::Retry => renewed = true,
                Renewal::Rejected => return Err(self.auth().refused(&errors)),
                Renewal::Refused(reason) => {
                    return Err(RegistryError::AuthRequired {
                        registry: self.registry.clone(),
                        detail: format!("{reason}: {errors}"),
                    });
                }
            }
        }
    }

    fn send_once(
        &self,
        call: &Call<'_>,
        authorization: Option<&str>,
    ) -> Result<http::Response<ureq::Body>> {
        let mut builder = http::Request::builder()
            .method(call.method.clone())
            .uri(call.url.as_str());
        for (name, value) in &call.headers {
            builder = builder.header(*name, value.as_str());
        }
        if let Some(value) = authorization {
            builder = builder.header("authorization", value);
        }
        let invalid = |source| RegistryError::Request {
            what: format!("{} {}", call.method, call.url),
            source,
        };
        let classify = |e| transport::classify(e, &call.method, &call.url);
        let has_body_method = matches!(call.method, Method::POST | Method::PUT | Method::PATCH);
        match &call.body {
            RequestBody::None if has_body_method => self
                .agent
                .run(builder.body(&[][..]).map_err(invalid)?)
                .map_err(classify),
            RequestBody::None => self
                .agent
                .run(builder.body(()).map_err(invalid)?)
                .map_err(classify),
            RequestBody::Bytes(bytes) => self
                .agent
                .run(builder.body(*bytes).map_err(invalid)?)
                .map_err(classify),
            RequestBody::Stream { size, open } => {
                let mut reader = open()?;
                let request = builder
                    .header("content-length", size.to_string())
                    .body(SendBody::from_reader(&mut reader))
                    .map_err(invalid)?;
                self.agent.run(request).map_err(classify)
            }
        }
    }

    /// Read a response's error body (bounded; unreadable bodies give no entries).
    pub fn error_body(&self, response: http::Response<ureq::Body>) -> ApiErrors {
        let status = response.status().as_u16();
        let body = transport::read_body(response.into_body(), ERROR_BODY_LIMIT)
            .ok()
            .flatten()
            .unwrap_or_default();
        ApiErrors::parse(status, &body)
    }

    /// The error for an unexpected status while doing `operation` (`pushing manifest ...`).
    pub fn status_error(
        &self,
        operation: &str,
        subject: Subject<'_>,
        response: http::Response<ureq::Body>,
    ) -> RegistryError {
        let errors = self.error_body(response);
        let status = errors.status;
        let repository = self.repository.clone();
        if status == 401 {
            return RegistryError::AuthRequired {
                registry: self.registry.clone(),
                detail: format!("{operation}: {errors}"),
            };
        }
        if status == 403 || errors.has_code("DENIED") || errors.has_code("UNAUTHORIZED") {
            return RegistryError::Denied { repository, errors };
        }
        if errors.has_code("NAME_UNKNOWN") {
            return RegistryError::RepositoryNotFound { repository, errors };
        }
        match subject {
            Subject::Manifest(reference)
                if status == 404 || errors.has_code("MANIFEST_UNKNOWN") =>
            {
                RegistryError::ManifestNotFound {
                    reference: reference.to_owned(),
                    errors,
                }
            }
            Subject::Blob(digest) if status == 404 || errors.has_code("BLOB_UNKNOWN") => {
                RegistryError::BlobNotFound {
                    repository,
                    digest: *digest,
                    errors,
                }
            }
            _ => RegistryError::Status {
                operation: operation.to_owned(),
                status,
                errors,
            },
        }
    }

    fn auth(&self) -> MutexGuard<'_, Auth> {
        // The state is a token cache: a panic elsewhere cannot leave it inconsistent.
        self.auth.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `GET /v2/`: any HTTP answer means the endpoint speaks to us; returns its challenges.
fn ping(agent: &ureq::Agent, base: &Url) -> Result<Vec<Challenge>> {
    let host = transport::host_of(base);
    let url = endpoint::ping_url(base).map_err(|e| bad_url(&host, "the API version check", e))?;
    let request = http::Request::builder()
        .method(Method::GET)
        .uri(url.as_str())
        .body(())
        .map_err(|source| RegistryError::Request {
            what: format!("GET {url}"),
            source,
        })?;
    let response = agent
        .run(request)
        .map_err(|e| transport::classify_first_contact(e, &Method::GET, &url))?;
    let challenges = challenges_of(&response);
    drain(response);
    Ok(challenges)
}

fn challenges_of(response: &http::Response<ureq::Body>) -> Vec<Challenge> {
    challenge::parse_all(
        response
            .headers()
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

fn bad_url(host: &str, what: &str, source: url::ParseError) -> RegistryError {
    RegistryError::Url {
        host: host.to_owned(),
        what: what.to_owned(),
        source,
    }
}

/// A response header as text, if present and valid.
pub fn header<'r>(response: &'r http::Response<ureq::Body>, name: &str) -> Option<&'r str> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Read what is left of a (small) response body so its connection can be reused; a body too
/// large or broken just means the connection is not reused.
pub fn drain(response: http::Response<ureq::Body>) {
    let _ = transport::read_body(response.into_body(), ERROR_BODY_LIMIT);
}
