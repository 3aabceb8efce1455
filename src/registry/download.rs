//! Downloading one blob into the content store: streamed, verified while it streams (the
//! blob's digest and size, and for a layer the digest of its uncompressed tar — its DiffID —
//! against the image config), resumed with `Range: bytes=N-` when the connection breaks
//! (restarted from zero when the registry ignores the range), retried with backoff on 5xx, 429
//! and broken connections, and committed only once everything matched. A blob wanted by
//! several transfers of this process at the same time is downloaded by one of them; the others
//! wait and find it stored.
//!
//! Not responsible for: deciding which blobs an image needs (see `pull`), unpacking layers.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::sync::{Condvar, Mutex, PoisonError};

use snapshotter::{DiffId, Digest, DigestWriter};
use ureq::http::{self, Method, StatusCode};

use super::client::{self, Call, Client, Subject};
use super::endpoint;
use super::error::{RegistryError, Result};
use super::observer::{BlobKind, PROGRESS_STEP, TransferEvent, TransferObserver};
use super::retry::{self, Policy};
use super::transport;
use crate::image::{Descriptor, media_type};
use crate::store::{BlobWriter, Store, StoreError};

/// Copy buffer for blob downloads.
const COPY_BUFFER: usize = 256 * 1024;

/// One blob to download.
pub struct Wanted<'a> {
    pub desc: &'a Descriptor,
    pub kind: BlobKind,
    /// The layer's DiffID from the image config, verified against the uncompressed bytes.
    pub diff_id: Option<DiffId>,
}

/// How [`fetch_blob`] got a blob into the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// It was there already (its content was not read).
    Present,
    /// Downloaded now, its digest and size verified; `diff_id` is the DiffID its uncompressed
    /// content was verified against, if any (see [`Wanted::diff_id`]).
    Downloaded { diff_id: Option<DiffId> },
}

/// Download `wanted` into `store` unless it is there already.
pub fn fetch_blob(
    client: &Client,
    store: &Store,
    wanted: &Wanted<'_>,
    policy: &Policy,
    observer: &dyn TransferObserver,
) -> Result<Fetched> {
    let digest = wanted.desc.digest;
    let kind = wanted.kind;
    let _claim = InFlight::claim(digest);
    if store.content().contains(&digest) {
        observer.event(TransferEvent::BlobExists { digest, kind });
        return Ok(Fetched::Present);
    }
    observer.event(TransferEvent::BlobStarted {
        digest,
        size: wanted.desc.size,
        kind,
    });
    let download = Download {
        client,
        store,
        wanted,
        policy,
        observer,
        what: format!("blob {digest} from {}", client.repository()),
    };
    let diff_id = download.run()?;
    observer.event(TransferEvent::BlobDone { digest, kind });
    Ok(Fetched::Downloaded { diff_id })
}

struct Download<'a> {
    client: &'a Client,
    store: &'a Store,
    wanted: &'a Wanted<'a>,
    policy: &'a Policy,
    observer: &'a dyn TransferObserver,
    what: String,
}

/// How one attempt ended without an error.
enum Attempt {
    /// All bytes were received.
    Complete,
    /// The connection broke after some bytes; `cause` is kept for the final error.
    Broken(RegistryError),
}

impl Download<'_> {
    /// Download, verify and store the blob; the DiffID it was verified against, if any.
    fn run(&self) -> Result<Option<DiffId>> {
        let desc = self.wanted.desc;
        let digest = desc.digest;
        let url = self.client.url(
            endpoint::blob_url(self.client.base(), self.client.name(), &digest),
            "a blob",
        )?;
        let mut sink = self.sink()?;
        let mut ranges_work = true;
        let mut attempt = 1;
        loop {
            let offset = sink.written();
            let mut call = Call::new(Method::GET, url.clone());
            if offset > 0 && ranges_work {
                call = call.header("range", format!("bytes={offset}-"));
            }
            let response = retry::send(self.client, &call, self.policy)?;
            let status = response.status();
            let resumed = match status {
                StatusCode::PARTIAL_CONTENT if offset > 0 && ranges_work => {
                    if content_range_start(&response) == Some(offset) {
                        true
                    } else {
                        // A range other than the one asked for: start over without ranges.
                        client::drain(response);
                        ranges_work = false;
                        sink = self.sink()?;
                        continue;
                    }
                }
                StatusCode::OK => false,
                StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => {
                    client::drain(response);
                    ranges_work = false;
                    sink = self.sink()?;
                    continue;
                }
                _ => {
                    return Err(self.client.status_error(
                        &format!("fetching blob {digest}"),
                        Subject::Blob(&digest),
                        response,
                    ));
                }
            };
            if offset > 0 && !resumed {
                // The registry ignored the range and sent the whole blob: start over.
                sink = self.sink()?;
            }
            match self.receive(response, &mut sink, &url)? {
                Attempt::Complete => break,
                Attempt::Broken(cause) => {
                    if attempt >= self.policy.attempts {
                        return Err(cause);
                    }
                    attempt += 1;
                    self.policy.pause(attempt, None);
                }
            }
        }
        self.commit(sink)
    }

    /// A fresh sink (a new ingest file; the previous one, if any, is removed when dropped).
    fn sink(&self) -> Result<Sink> {
        let writer = self
            .store
            .content()
            .writer()
            .map_err(|source| RegistryError::Store {
                action: format!("starting to store {}", self.what),
                source,
            })?;
        Ok(Sink::new(
            writer,
            // An uncompressed layer's DiffID is its digest, which the store computes anyway.
            self.wanted
                .diff_id
                .and(layer_compression(&self.wanted.desc.media_type))
                .filter(|c| *c != Compression::Plain),
        ))
    }

    /// Copy a response body into the sink. Errors of the store and of the content are final;
    /// a broken connection is an [`Attempt::Broken`].
    fn receive(
        &self,
        response: http::Response<ureq::Body>,
        sink: &mut Sink,
        url: &url::Url,
    ) -> Result<Attempt> {
        let size = self.wanted.desc.size;
        let digest = self.wanted.desc.digest;
        // One byte more than the descriptor allows is enough to detect an oversized blob
        // without letting a misbehaving registry fill the disk.
        let remaining = (size + 1).saturating_sub(sink.written());
        let mut body = response.into_body().into_reader().take(remaining);
        let mut buf = vec![0u8; COPY_BUFFER];
        let mut reported = sink.written();
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Ok(Attempt::Broken(RegistryError::Receive {
                        host: transport::host_of(url),
                        what: format!("blob {digest}"),
                        source,
                    }));
                }
            };
            sink.write(&buf[..n], &self.what)?;
            let transferred = sink.written();
            if transferred - reported >= PROGRESS_STEP || transferred >= size {
                reported = transferred;
                self.observer.event(TransferEvent::BlobProgress {
                    digest,
                    transferred: transferred.min(size),
                    size,
                });
            }
        }
        if sink.written() < size {
            // The body ended early without an error (a connection closed where no length
            // was announced): like a broken connection, resume.
            return Ok(Attempt::Broken(RegistryError::Receive {
                host: transport::host_of(url),
                what: format!("blob {digest}"),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the body ended after {} of {size} bytes", sink.written()),
                ),
            }));
        }
        Ok(Attempt::Complete)
    }

    /// Verify, in this order, the blob's digest and size, then its DiffID, and only then
    /// make it visible in the store (the ingest file is removed on every error path). Returns
    /// the DiffID the content was verified against, if any.
    fn commit(&self, sink: Sink) -> Result<Option<DiffId>> {
        let desc = self.wanted.desc;
        let what = &self.what;
        let (writer, uncompressed) = sink.finish();
        let store_error = |source| RegistryError::Store {
            action: format!("storing {what}"),
            source,
        };
        let staged = writer.stage().map_err(store_error)?;
        let info = staged.info();
        if info.digest != desc.digest {
            return Err(RegistryError::DigestMismatch {
                what: what.clone(),
                expected: desc.digest,
                actual: info.digest,
            });
        }
        if info.size != desc.size {
            return Err(RegistryError::SizeMismatch {
                what: what.clone(),
                expected: desc.size,
                actual: info.size,
            });
        }
        let uncompressed = if layer_compression(&desc.media_type) == Some(Compression::Plain) {
            Ok(Some(info.digest))
        } else {
            uncompressed
        };
        let mut verified = None;
        if let Some(want) = self.wanted.diff_id {
            match uncompressed {
                Ok(Some(got)) if got != want.0 => {
                    return Err(RegistryError::DigestMismatch {
                        what: format!("the uncompressed content (DiffID) of layer {what}"),
                        expected: want.0,
                        actual: got,
                    });
                }
                Ok(Some(_)) => verified = Some(want),
                Ok(None) => {}
                Err(e) => {
                    return Err(RegistryError::InvalidResponse {
                        host: transport::host_of(self.client.base()),
                        operation: format!("fetching {what}"),
                        detail: format!(
                            "the layer does not decompress as {}: {e}",
                            desc.media_type
                        ),
                    });
                }
            }
        }
        staged.publish().map_err(store_error)?;
        Ok(verified)
    }
}

/// `Content-Range: bytes START-END/TOTAL` → START.
fn content_range_start(response: &http::Response<ureq::Body>) -> Option<u64> {
    let value = client::header(response, "content-range")?;
    let range = value.strip_prefix("bytes ")?;
    let (start, _) = range.split_once('-')?;
    start.trim().parse().ok()
}

/// How a layer's bytes are compressed, for DiffID verification. `None`: unknown layer type
/// (not verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Gzip,
    Zstd,
    Plain,
}

fn layer_compression(media: &str) -> Option<Compression> {
    match media_type::oci_layer_type(media)? {
        media_type::OCI_LAYER_GZIP => Some(Compression::Gzip),
        media_type::OCI_LAYER_ZSTD => Some(Compression::Zstd),
        media_type::OCI_LAYER_TAR => Some(Compression::Plain),
        _ => None,
    }
}

type Hashing = DigestWriter<io::Sink>;

/// The uncompressed stream of a layer, hashed as it is decompressed.
enum Uncompressed {
    Gzip(Box<flate2::write::MultiGzDecoder<Hashing>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, Hashing>>),
    Plain(Hashing),
}

/// Where received bytes go: the store's ingest file, and the DiffID hasher. A decompression
/// failure is kept for later: the blob's own digest is checked first, so that bytes that are
/// not the blob are reported as such rather than as a bad layer.
struct Sink {
    writer: BlobWriter,
    uncompressed: Option<Uncompressed>,
    undecodable: Option<io::Error>,
}

impl Sink {
    fn new(writer: BlobWriter, compression: Option<Compression>) -> Self {
        let hashing = || DigestWriter::new(io::sink());
        let uncompressed = match compression {
            Some(Compression::Gzip) => Some(Uncompressed::Gzip(Box::new(
                flate2::write::MultiGzDecoder::new(hashing()),
            ))),
            Some(Compression::Zstd) => zstd::stream::write::Decoder::new(hashing())
                .ok()
                .map(|d| Uncompressed::Zstd(Box::new(d))),
            Some(Compression::Plain) => Some(Uncompressed::Plain(hashing())),
            None => None,
        };
        Self {
            writer,
            uncompressed,
            undecodable: None,
        }
    }

    fn written(&self) -> u64 {
        self.writer.written()
    }

    fn write(&mut self, bytes: &[u8], what: &str) -> Result<()> {
        self.writer
            .write_all(bytes)
            .map_err(|e| RegistryError::Store {
                action: format!("writing {what}"),
                source: StoreError::Io(e),
            })?;
        let result = match &mut self.uncompressed {
            Some(Uncompressed::Gzip(d)) => d.write_all(bytes),
            Some(Uncompressed::Zstd(d)) => d.write_all(bytes),
            Some(Uncompressed::Plain(h)) => h.write_all(bytes),
            None => Ok(()),
        };
        if let Err(e) = result {
            self.uncompressed = None;
            self.undecodable = Some(e);
        }
        Ok(())
    }

    /// The ingest writer and the digest of the uncompressed bytes (`Ok(None)`: not
    /// verified; `Err`: the bytes do not decompress).
    fn finish(self) -> (BlobWriter, io::Result<Option<Digest>>) {
        let hashing = match (self.undecodable, self.uncompressed) {
            (Some(e), _) => Err(e),
            (None, None) => Ok(None),
            (None, Some(Uncompressed::Plain(h))) => Ok(Some(h)),
            (None, Some(Uncompressed::Gzip(d))) => d.finish().map(Some),
            (None, Some(Uncompressed::Zstd(mut d))) => d.flush().map(|()| Some(d.into_inner())),
        };
        (self.writer, hashing.map(|h| h.map(|h| h.finish().1)))
    }
}

/// Digests being downloaded by this process: a second transfer of the same blob waits for the
/// first instead of downloading it again.
static IN_FLIGHT: Mutex<BTreeSet<Digest>> = Mutex::new(BTreeSet::new());
static IN_FLIGHT_DONE: Condvar = Condvar::new();

/// The right to download one digest; released (waking waiters) on drop.
struct InFlight(Digest);

impl InFlight {
    fn claim(digest: Digest) -> Self {
        let mut set = IN_FLIGHT.lock().unwrap_or_else(PoisonError::into_inner);
        while set.contains(&digest) {
            set = IN_FLIGHT_DONE
                .wait(set)
                .unwrap_or_else(PoisonError::into_inner);
        }
        set.insert(digest);
        Self(digest)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
        IN_FLIGHT_DONE.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn sink(store: &Store, compression: Option<Compression>) -> Sink {
        Sink::new(store.content().writer().unwrap(), compression)
    }

    #[test]
    fn uncompressed_digest_is_computed_while_streaming() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tar = vec![42u8; 300_000];
        let cases = [
            (Compression::Gzip, gzip(&tar)),
            (Compression::Zstd, zstd::encode_all(&tar[..], 1).unwrap()),
            (Compression::Plain, tar.clone()),
        ];
        for (compression, bytes) in cases {
            let mut s = sink(&store, Some(compression));
            for chunk in bytes.chunks(7_000) {
                s.write(chunk, "x").unwrap();
            }
            assert_eq!(s.written(), bytes.len() as u64);
            let (_, got) = s.finish();
            assert_eq!(got.unwrap(), Some(Digest::of(&tar)), "{compression:?}");
        }
        let (_, none) = sink(&store, None).finish();
        assert_eq!(none.unwrap(), None);
    }

    #[test]
    fn garbage_is_not_a_gzip_layer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut s = sink(&store, Some(Compression::Gzip));
        s.write(b"definitely not gzip", "x").unwrap();
        assert_eq!(
            s.written(),
            19,
            "the bytes are still stored for the digest check"
        );
        let (_, got) = s.finish();
        assert!(got.is_err(), "{got:?}");
    }

    #[test]
    fn content_range_start_is_parsed() {
        let response = |v: &str| {
            http::Response::builder()
                .header("content-range", v)
                .body(ureq::Body::builder().data(""))
                .unwrap()
        };
        assert_eq!(
            content_range_start(&response("bytes 100-199/200")),
            Some(100)
        );
        assert_eq!(content_range_start(&response("bytes */200")), None);
        assert_eq!(content_range_start(&response("items 1-2/3")), None);
    }

    #[test]
    fn a_digest_in_flight_is_waited_for() {
        let digest = Digest::of(b"in flight");
        let first = InFlight::claim(digest);
        let waiter = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            drop(InFlight::claim(digest));
            started.elapsed()
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(first);
        let waited = waiter.join().unwrap();
        assert!(waited >= std::time::Duration::from_millis(90), "{waited:?}");
    }
}
