//! Uploading one blob from the content store: skipped when the registry has it (`HEAD`),
//! mounted from another repository of the same registry when one is known to hold it
//! (`POST …/uploads/?mount=<digest>&from=<repo>`), else uploaded in one streamed `PUT`
//! (monolithic) or as `PATCH` chunks with `Content-Range` followed by a closing `PUT`
//! (chunked, when `KILN_PUSH_CHUNK_SIZE` is set and the blob is larger). A registry that
//! refuses one mode gets the other. A chunked upload whose connection breaks asks the
//! session where it stands (`GET` on the upload URL: `Range: 0-<last>`) and continues from
//! there; when it cannot (or for a monolithic upload) a new session starts from zero. Every
//! attempt after the first waits with backoff (see `retry`).
//!
//! Memory stays bounded: bodies are streamed from the blob file, never read whole.
//!
//! Not responsible for: which blobs to push, their order or parallelism (see `push`).

use std::io::{Read, Seek, SeekFrom};

use snapshotter::Digest;
use ureq::http::{self, Method, StatusCode};
use url::Url;

use super::client::{self, Call, Client, RequestBody, Subject};
use super::endpoint;
use super::error::{RegistryError, Result};
use super::observer::{BlobKind, ProgressReader, TransferEvent, TransferObserver};
use super::retry::{self, Policy};
use crate::image::Descriptor;
use crate::store::Store;

/// The chunk size used when a registry refuses monolithic uploads and none was configured.
const FALLBACK_CHUNK: u64 = 16 * 1024 * 1024;

/// How blobs are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One `PUT` with the whole blob.
    Monolithic,
    /// `PATCH` requests of at most this many bytes, then an empty `PUT`.
    Chunked(u64),
}

impl Mode {
    /// `KILN_PUSH_CHUNK_SIZE` (bytes, or with a `K`/`M`/`G` suffix, powers of 1024) selects
    /// chunked uploads for blobs larger than a chunk; unset or 0: monolithic.
    pub fn from_env() -> Self {
        std::env::var("KILN_PUSH_CHUNK_SIZE")
            .ok()
            .and_then(|v| parse_size(&v))
            .filter(|n| *n > 0)
            .map_or(Self::Monolithic, Self::Chunked)
    }

    fn for_size(self, size: u64) -> Self {
        match self {
            Self::Chunked(chunk) if size > chunk => self,
            _ => Self::Monolithic,
        }
    }
}

/// `123`, `64K`, `16M`, `1G` (binary multiples; an optional trailing `B`/`iB` is accepted).
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_uppercase();
    let t = t
        .strip_suffix("IB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(&t);
    let (digits, shift) = match t.chars().last()? {
        'K' => (&t[..t.len() - 1], 10),
        'M' => (&t[..t.len() - 1], 20),
        'G' => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// What one upload needs to know.
pub struct Upload<'a> {
    pub client: &'a Client,
    pub store: &'a Store,
    pub desc: &'a Descriptor,
    pub kind: BlobKind,
    /// Repositories of the same registry (paths) known to hold the blob.
    pub mount_from: &'a [String],
    pub mode: Mode,
    pub policy: &'a Policy,
    pub observer: &'a dyn TransferObserver,
}

/// How an attempt to send the bytes ended.
enum Outcome {
    Done,
    /// The registry refused this mode: try the other one.
    Refused(RegistryError),
    /// The exchange broke or the registry was unavailable: try again.
    Failed(RegistryError),
}

impl Upload<'_> {
    /// Make sure the registry has the blob.
    pub fn run(&self) -> Result<()> {
        let digest = self.desc.digest;
        let kind = self.kind;
        if self.exists()? {
            self.observer
                .event(TransferEvent::BlobExists { digest, kind });
            return Ok(());
        }
        for from in self.mount_from {
            if self.mount(from)? {
                self.observer
                    .event(TransferEvent::BlobExists { digest, kind });
                return Ok(());
            }
        }
        let size = self
            .store
            .content()
            .size(&digest)
            .map_err(|source| RegistryError::Store {
                action: format!("reading blob {digest} to push it"),
                source,
            })?;
        if size != self.desc.size {
            return Err(RegistryError::SizeMismatch {
                what: format!("blob {digest} in the local store"),
                expected: self.desc.size,
                actual: size,
            });
        }
        self.observer
            .event(TransferEvent::BlobStarted { digest, size, kind });
        let mut mode = self.mode.for_size(size);
        let mut switched = false;
        let mut attempt = 1;
        loop {
            let session = retry::run(self.policy, || self.start())?;
            let outcome = match mode {
                Mode::Monolithic => self.monolithic(&session, size)?,
                Mode::Chunked(chunk) => self.chunked(session, size, chunk)?,
            };
            match outcome {
                Outcome::Done => break,
                Outcome::Refused(_) if !switched => {
                    switched = true;
                    mode = match mode {
                        Mode::Monolithic => Mode::Chunked(FALLBACK_CHUNK.min(size).max(1)),
                        Mode::Chunked(_) => Mode::Monolithic,
                    };
                }
                Outcome::Refused(e) => return Err(e),
                Outcome::Failed(e) if attempt >= self.policy.attempts => return Err(e),
                Outcome::Failed(_) => {
                    attempt += 1;
                    self.policy.pause(attempt, None);
                }
            }
        }
        self.observer
            .event(TransferEvent::BlobDone { digest, kind });
        Ok(())
    }

    fn blob_file(&self) -> Result<fs_err::File> {
        let digest = self.desc.digest;
        self.store
            .content()
            .open_blob(&digest)
            .map_err(|source| RegistryError::Store {
                action: format!("opening blob {digest} to push it"),
                source,
            })
    }

    /// `HEAD /v2/<name>/blobs/<digest>`.
    fn exists(&self) -> Result<bool> {
        let digest = self.desc.digest;
        let url = self.client.url(
            endpoint::blob_url(self.client.base(), self.client.name(), &digest),
            "a blob",
        )?;
        let head = retry::send(self.client, &Call::new(Method::HEAD, url), self.policy)?;
        match head.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.client.status_error(
                &format!("checking for blob {digest}"),
                Subject::Other,
                head,
            )),
        }
    }

    /// Cross-repository mount: `201 Created` means the registry now has the blob here; a
    /// `202` (the registry declined, e.g. no access to `from`) ends the abandoned session.
    fn mount(&self, from: &str) -> Result<bool> {
        let digest = self.desc.digest;
        let mut url = self.client.url(
            endpoint::upload_start_url(self.client.base(), self.client.name()),
            "a blob mount",
        )?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let response = retry::send(
            self.client,
            &Call::new(Method::POST, url.clone()),
            self.policy,
        )?;
        let status = response.status();
        let location = client::header(&response, "location").map(str::to_owned);
        client::drain(response);
        if status == StatusCode::CREATED {
            return Ok(true);
        }
        if status == StatusCode::ACCEPTED
            && let Some(session) = location.and_then(|l| endpoint::resolve_location(&url, &l).ok())
        {
            let _ = self.client.send(&Call::new(Method::DELETE, session));
        }
        Ok(false)
    }

    /// `POST /v2/<name>/blobs/uploads/` → the session URL from `Location`.
    fn start(&self) -> Result<Url> {
        let digest = self.desc.digest;
        let url = self.client.url(
            endpoint::upload_start_url(self.client.base(), self.client.name()),
            "a blob upload",
        )?;
        let response = retry::send(
            self.client,
            &Call::new(Method::POST, url.clone()),
            self.policy,
        )?;
        let operation = format!("starting the upload of blob {digest}");
        if response.status() != StatusCode::ACCEPTED {
            return Err(self
                .client
                .status_error(&operation, Subject::Other, response));
        }
        let session = self.location(&response, &url, &operation)?;
        client::drain(response);
        Ok(session)
    }

    fn location(
        &self,
        response: &http::Response<ureq::Body>,
        request_url: &Url,
        operation: &str,
    ) -> Result<Url> {
        let invalid = |detail: String| RegistryError::InvalidResponse {
            host: self.client.host().to_owned(),
            operation: operation.to_owned(),
            detail,
        };
        let location = client::header(response, "location")
            .ok_or_else(|| invalid("no Location header".into()))?;
        endpoint::resolve_location(request_url, location)
            .map_err(|e| invalid(format!("Location `{location}` is not a valid URL: {e}")))
    }

    /// One `PUT <session>?digest=` with the whole blob.
    fn monolithic(&self, session: &Url, size: u64) -> Result<Outcome> {
        let digest = self.desc.digest;
        let open = || -> Result<Box<dyn Read + '_>> {
            Ok(Box::new(ProgressReader::new(
                self.blob_file()?,
                self.observer,
                digest,
                size,
            )))
        };
        let call = Call::new(Method::PUT, endpoint::upload_complete_url(session, &digest))
            .header("content-type", "application/octet-stream")
            .body(RequestBody::Stream { size, open: &open });
        self.finish(self.client.send(&call), "uploading blob")
    }

    /// `PATCH` chunks, resuming from what the session reports after a broken one, then `PUT`.
    fn chunked(&self, mut session: Url, size: u64, chunk: u64) -> Result<Outcome> {
        let digest = self.desc.digest;
        let mut offset = 0;
        let mut resumes = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            let open = || -> Result<Box<dyn Read + '_>> {
                let mut file = self.blob_file()?;
                file.seek(SeekFrom::Start(offset))
                    .map_err(|e| RegistryError::Store {
                        action: format!("reading blob {digest} to push it"),
                        source: crate::store::StoreError::Io(e),
                    })?;
                Ok(Box::new(file.take(len)))
            };
            let call = Call::new(Method::PATCH, session.clone())
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{offset}-{}", offset + len - 1))
                .body(RequestBody::Stream {
                    size: len,
                    open: &open,
                });
            let operation = format!("uploading a chunk of blob {digest}");
            let sent = self.client.send(&call);
            let broken = match sent {
                Ok(response) if response.status() == StatusCode::ACCEPTED => {
                    session = self.location(&response, &session, &operation)?;
                    client::drain(response);
                    offset += len;
                    self.observer.event(TransferEvent::BlobProgress {
                        digest,
                        transferred: offset,
                        size,
                    });
                    continue;
                }
                Ok(response) if retry::is_retryable_status(response.status()) => self
                    .client
                    .status_error(&operation, Subject::Other, response),
                Ok(response) if offset == 0 => {
                    // The very first chunk refused: this registry does not take chunks.
                    let e = self
                        .client
                        .status_error(&operation, Subject::Other, response);
                    return Ok(Outcome::Refused(e));
                }
                Ok(response) => {
                    let e = self
                        .client
                        .status_error(&operation, Subject::Other, response);
                    return Ok(Outcome::Failed(e));
                }
                Err(e) if retry::is_transient(&e) => e,
                Err(e) => return Err(e),
            };
            resumes += 1;
            if resumes >= self.policy.attempts {
                return Ok(Outcome::Failed(broken));
            }
            self.policy.pause(resumes + 1, None);
            // Continue only from a chunk boundary: none or all of the broken chunk arrived.
            // A registry that kept part of a chunk whose request broke may not have kept it
            // whole (distribution loses buffered bytes), so anything else starts over.
            match self.status(&session)? {
                Some((url, received)) if received == offset || received == offset + len => {
                    session = url;
                    offset = received;
                }
                _ => return Ok(Outcome::Failed(broken)),
            }
        }
        let call = Call::new(
            Method::PUT,
            endpoint::upload_complete_url(&session, &digest),
        )
        .header("content-type", "application/octet-stream")
        .body(RequestBody::Bytes(&[]));
        let outcome = self.finish(self.client.send(&call), "completing the upload of blob");
        match outcome {
            // After a resumption, a registry that assembled something else is given a fresh
            // upload rather than the last word.
            Err(e @ RegistryError::Status { status: 400, .. }) if resumes > 0 => {
                Ok(Outcome::Failed(e))
            }
            other => other,
        }
    }

    /// `GET <session>`: the session URL to continue with and how many bytes the registry
    /// has (`Range: 0-<last>`; no header: none). `None` when the session is gone or the
    /// answer says nothing usable.
    fn status(&self, session: &Url) -> Result<Option<(Url, u64)>> {
        let response = match retry::send(
            self.client,
            &Call::new(Method::GET, session.clone()),
            self.policy,
        ) {
            Ok(r) => r,
            Err(e) if retry::is_transient(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        if response.status() != StatusCode::NO_CONTENT {
            client::drain(response);
            return Ok(None);
        }
        let received = match client::header(&response, "range") {
            None => Some(0),
            Some(range) => parse_received(range),
        };
        let url = match client::header(&response, "location") {
            Some(l) => endpoint::resolve_location(session, l).ok(),
            None => Some(session.clone()),
        };
        client::drain(response);
        Ok(url.zip(received))
    }

    /// Interpret the answer to the request that completes an upload.
    fn finish(&self, sent: Result<http::Response<ureq::Body>>, doing: &str) -> Result<Outcome> {
        let digest = self.desc.digest;
        let operation = format!("{doing} {digest}");
        let response = match sent {
            Ok(r) => r,
            Err(e) if retry::is_transient(&e) => return Ok(Outcome::Failed(e)),
            Err(e) => return Err(e),
        };
        let status = response.status();
        if status.is_success() {
            check_reported_digest(&response, &digest, || {
                format!("blob {digest} uploaded to {}", self.client.repository())
            })?;
            client::drain(response);
            return Ok(Outcome::Done);
        }
        let retryable = retry::is_retryable_status(status);
        let refused = matches!(status.as_u16(), 405 | 413 | 415 | 416 | 501);
        let e = self
            .client
            .status_error(&operation, Subject::Other, response);
        Ok(if retryable {
            Outcome::Failed(e)
        } else if refused {
            Outcome::Refused(e)
        } else {
            return Err(e);
        })
    }
}

/// `Range: 0-<last>` (also `bytes=0-<last>`) → bytes received (`last + 1`). `0-0` is what
/// distribution answers for an empty session too, and is taken as nothing received (were it
/// one byte, the next chunk's `Content-Range` is refused and the upload starts over).
fn parse_received(range: &str) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    let (start, end) = range.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    match end.trim().parse::<u64>().ok()? {
        0 => Some(0),
        last => last.checked_add(1),
    }
}

/// A registry that reports a `Docker-Content-Digest` must report the digest that was sent. An
/// unparsable or non-sha256 header says nothing and is ignored.
pub fn check_reported_digest(
    response: &http::Response<ureq::Body>,
    sent: &Digest,
    what: impl Fn() -> String,
) -> Result<()> {
    match client::header(response, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok()) {
        Some(reported) if reported != *sent => Err(RegistryError::DigestMismatch {
            what: what(),
            expected: *sent,
            actual: reported,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_parse() {
        assert_eq!(parse_size("1234"), Some(1234));
        assert_eq!(parse_size("64k"), Some(64 * 1024));
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn modes_pick_by_size() {
        assert_eq!(Mode::Chunked(10).for_size(11), Mode::Chunked(10));
        assert_eq!(Mode::Chunked(10).for_size(10), Mode::Monolithic);
        assert_eq!(Mode::Monolithic.for_size(1 << 40), Mode::Monolithic);
    }

    #[test]
    fn upload_status_ranges_parse() {
        assert_eq!(parse_received("0-99"), Some(100));
        assert_eq!(parse_received("bytes=0-0"), Some(0));
        assert_eq!(parse_received("0-1"), Some(2));
        assert_eq!(parse_received("5-9"), None);
        assert_eq!(parse_received("junk"), None);
    }
}
