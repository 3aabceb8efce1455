//! Retries of registry requests: which failures are worth another attempt (connection resets
//! and other broken exchanges, HTTP 5xx and 429), how long to wait (exponential backoff with
//! jitter, bounded; a registry's `Retry-After` wins), and how many attempts to make.
//!
//! Two levels use it: [`send`] retries one request whose answer has not been read yet (only for
//! requests that may be repeated as they are: reads, manifest `PUT`s, upload starts), and
//! [`run`] retries a whole operation (fetching a manifest, including its body).
//!
//! Not responsible for: resuming interrupted blob transfers (`pull` and `push` do that with
//! `Range` requests and upload-session status, calling [`Policy::pause`] between attempts),
//! nor for authentication renewal (see `client`).

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use ureq::http::{self, StatusCode};

use super::client::{self, Call, Client};
use super::error::{RegistryError, Result};

/// Attempts made for one request or operation (the first one included).
const DEFAULT_ATTEMPTS: u32 = 5;
/// Wait before the second attempt; doubled for each further one.
const DEFAULT_BASE: Duration = Duration::from_millis(200);
/// Longest wait between two attempts chosen by backoff.
const DEFAULT_MAX: Duration = Duration::from_secs(10);
/// Longest wait a `Retry-After` header may impose.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Backoff before the second attempt.
    pub base: Duration,
    /// Backoff ceiling.
    pub max: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            attempts: DEFAULT_ATTEMPTS,
            base: DEFAULT_BASE,
            max: DEFAULT_MAX,
        }
    }
}

impl Policy {
    /// The policy of this process: the defaults, or `KILN_REGISTRY_RETRIES` attempts (`1`
    /// disables retries).
    pub fn from_env() -> Self {
        let mut policy = Self::default();
        if let Some(n) = std::env::var("KILN_REGISTRY_RETRIES")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
        {
            policy.attempts = n.max(1);
        }
        policy
    }

    /// The wait before attempt `next` (2 for the first retry): `Retry-After` when the
    /// registry gave one (capped), else `base · 2^(next-2)` capped at `max`, with "equal
    /// jitter" (a uniformly random half added to a fixed half) so that parallel transfers that
    /// failed together do not come back together.
    pub fn delay(&self, next: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(RETRY_AFTER_MAX);
        }
        let exponent = next.saturating_sub(2).min(20);
        let full = self.base.saturating_mul(1 << exponent).min(self.max);
        let half = full / 2;
        let jitter = u128::from(random_u64()) % (half.as_nanos() + 1);
        half + Duration::from_nanos(u64::try_from(jitter).unwrap_or(u64::MAX))
    }

    /// Sleep before attempt `next`.
    pub fn pause(&self, next: u32, retry_after: Option<Duration>) {
        std::thread::sleep(self.delay(next, retry_after));
    }
}

/// A random number, for jitter only (the standard library's per-hasher random keys).
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

/// Whether an HTTP status says "try again later": 5xx (except 501 Not Implemented and 505,
/// which will not change) and 429 Too Many Requests.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error()
            && status != StatusCode::NOT_IMPLEMENTED
            && status != StatusCode::HTTP_VERSION_NOT_SUPPORTED)
}

/// Whether a failure may go away by itself: an exchange that broke (reset, EOF, timeout),
/// a body whose reception broke, or a retryable status. A registry that cannot be reached at
/// all, TLS failures, refusals and verification failures are final.
pub fn is_transient(err: &RegistryError) -> bool {
    match err {
        RegistryError::Transport { .. } | RegistryError::Receive { .. } => true,
        RegistryError::Status { status, .. } => {
            StatusCode::from_u16(*status).is_ok_and(is_retryable_status)
        }
        _ => false,
    }
}

/// `Retry-After` as a number of seconds (the HTTP-date form is not used by registries and is
/// ignored, falling back to backoff).
pub fn retry_after(response: &http::Response<ureq::Body>) -> Option<Duration> {
    client::header(response, "retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Send `call`, retrying broken exchanges and retryable statuses with backoff. The call must
/// be safe to repeat as it is. The last answer (even a retryable status) or the last error is
/// returned when the attempts are used up.
pub fn send(
    client: &Client,
    call: &Call<'_>,
    policy: &Policy,
) -> Result<http::Response<ureq::Body>> {
    let mut attempt = 1;
    loop {
        let last = attempt >= policy.attempts;
        match client.send(call) {
            Ok(response) if !last && is_retryable_status(response.status()) => {
                let wait = retry_after(&response);
                client::drain(response);
                attempt += 1;
                policy.pause(attempt, wait);
            }
            Err(e) if !last && is_transient(&e) => {
                attempt += 1;
                policy.pause(attempt, None);
            }
            other => return other,
        }
    }
}

/// Run `operation`, again after transient failures (see [`is_transient`]), with backoff.
pub fn run<T>(policy: &Policy, mut operation: impl FnMut() -> Result<T>) -> Result<T> {
    let mut attempt = 1;
    loop {
        match operation() {
            Err(e) if attempt < policy.attempts && is_transient(&e) => {
                attempt += 1;
                policy.pause(attempt, None);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ApiErrors;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = Policy {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let d2 = p.delay(2, None);
            assert!(d2 >= Duration::from_millis(50) && d2 <= Duration::from_millis(100));
            let d3 = p.delay(3, None);
            assert!(d3 >= Duration::from_millis(100) && d3 <= Duration::from_millis(200));
            let d9 = p.delay(9, None);
            assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_secs(1));
            assert!(p.delay(u32::MAX, None) <= Duration::from_secs(1));
        }
        let distinct: std::collections::BTreeSet<_> = (0..20).map(|_| p.delay(5, None)).collect();
        assert!(distinct.len() > 1, "jitter varies the delay");
    }

    #[test]
    fn retry_after_wins_but_is_bounded() {
        let p = Policy::default();
        assert_eq!(
            p.delay(2, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(p.delay(2, Some(Duration::from_secs(3600))), RETRY_AFTER_MAX);
    }

    #[test]
    fn which_statuses_and_errors_are_retried() {
        for s in [500, 502, 503, 504, 429] {
            assert!(is_retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 416, 501, 505] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
        let status = |status| RegistryError::Status {
            operation: "x".into(),
            status,
            errors: ApiErrors::parse(status, b""),
        };
        assert!(is_transient(&status(503)));
        assert!(!is_transient(&status(404)));
        assert!(is_transient(&RegistryError::Receive {
            host: "h".into(),
            what: "blob".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        }));
        assert!(!is_transient(&RegistryError::AuthRequired {
            registry: "r".into(),
            detail: "d".into(),
        }));
    }

    #[test]
    fn run_retries_transient_failures_only() {
        let p = Policy {
            attempts: 3,
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
        };
        let mut calls = 0;
        let out = run(&p, || {
            calls += 1;
            if calls < 3 {
                Err(RegistryError::Status {
                    operation: "x".into(),
                    status: 500,
                    errors: ApiErrors::parse(500, b""),
                })
            } else {
                Ok(calls)
            }
        });
        assert_eq!(out.unwrap(), 3);

        let mut calls = 0;
        let out: Result<()> = run(&p, || {
            calls += 1;
            Err(RegistryError::AuthRequired {
                registry: "r".into(),
                detail: "d".into(),
            })
        });
        assert!(out.is_err());
        assert_eq!(calls, 1, "final errors are not retried");

        let mut calls = 0;
        let out: Result<()> = run(&p, || {
            calls += 1;
            Err(RegistryError::Status {
                operation: "x".into(),
                status: 502,
                errors: ApiErrors::parse(502, b""),
            })
        });
        assert!(out.is_err());
        assert_eq!(calls, 3, "attempts are bounded");
    }
}
