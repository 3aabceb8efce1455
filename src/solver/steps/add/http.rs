//! ADD of an `http://` or `https://` URL (BuildKit `source/http`, Dockerfile reference "ADD" >
//! "Adding files from a URL", "ADD --checksum"):
//!
//! - the file is named after the last component of the URL path (`__unnamed__` when there is
//!   none), mode `0600`, owner 0:0 (before `--chown`/`--chmod`), mtime from `Last-Modified`
//!   (the Unix epoch without one);
//! - `--checksum=sha256:<hex>` is verified over the downloaded bytes;
//! - a non-2xx status is an error; the body is never extracted unless `--unpack=true`.
//!
//! Not responsible for: writing into the image (the copy does, from the downloaded file).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL `{url}`")]
    BadUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("downloading {url}")]
    Request {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("downloading {url}: invalid response status {status}")]
    Status { url: String, status: u16 },
    #[error("downloading {url}: reading the body")]
    Body {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid --checksum={0}: expected sha256:<64 hex digits>")]
    BadChecksum(String),
    #[error("checksum of {url} does not match: expected {expected}, got sha256:{actual}")]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("saving the download of {url}")]
    Save {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

/// Whether a source is a URL ADD downloads (BuildKit `isHTTPSource`).
pub fn is_url(source: &str) -> bool {
    let lower = source.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The file name BuildKit gives a download: the URL path's last component.
pub fn file_name(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            let path = u.path().trim_end_matches('/').to_owned();
            let base = path.rsplit('/').next().unwrap_or("").to_owned();
            let base = percent_decode(&base);
            (!base.is_empty() && base != "." && base != "..").then_some(base)
        })
        .unwrap_or_else(|| "__unnamed__".to_owned())
}

/// `%XX` escapes decoded (Go's `url.URL.Path` is decoded); invalid escapes stay as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Check a `--checksum` value; only `sha256:` is accepted (as BuildKit, which takes any
/// digest algorithm it knows; sha256 is the one used in practice).
pub fn parse_checksum(text: &str) -> Result<String, HttpError> {
    let hex = text
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| HttpError::BadChecksum(text.to_owned()))?;
    Ok(hex.to_ascii_lowercase())
}

/// Download `url` into `dir` as `name`; returns nothing, the file is there with BuildKit's
/// mode and mtime.
pub fn download(
    url: &str,
    checksum: Option<&str>,
    dir: &Path,
    name: &str,
) -> Result<(), HttpError> {
    let parsed = url::Url::parse(url).map_err(|source| HttpError::BadUrl {
        url: url.to_owned(),
        source,
    })?;
    let expected = checksum.map(parse_checksum).transpose()?;
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut response = agent
        .get(parsed.as_str())
        .call()
        .map_err(|source| HttpError::Request {
            url: url.to_owned(),
            source: Box::new(source),
        })?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(HttpError::Status {
            url: url.to_owned(),
            status,
        });
    }
    let mtime = response
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date)
        .unwrap_or(0);
    let path = dir.join(name);
    let save = |source| HttpError::Save {
        url: url.to_owned(),
        source,
    };
    let mut file = fs_err::File::create(&path).map_err(save)?;
    let mut hasher = Sha256::new();
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(|source| HttpError::Body {
            url: url.to_owned(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        std::io::Write::write_all(&mut file, &buf[..n]).map_err(save)?;
    }
    drop(file);
    let actual = hex::encode(hasher.finalize());
    if let Some(expected) = expected
        && expected != actual
    {
        return Err(HttpError::ChecksumMismatch {
            url: url.to_owned(),
            expected: format!("sha256:{expected}"),
            actual,
        });
    }
    fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(save)?;
    super::super::copy::set_mtime(&path, mtime)
        .map_err(|e| save(std::io::Error::other(e.to_string())))?;
    Ok(())
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 7231 IMF-fixdate) as Unix seconds.
fn parse_http_date(text: &str) -> Option<u64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc2822).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_checksums_and_dates() {
        assert_eq!(
            file_name("https://example.com/a/b/tool.tar.gz"),
            "tool.tar.gz"
        );
        assert_eq!(file_name("https://example.com/a/b/?x=1"), "b");
        assert_eq!(file_name("https://example.com/"), "__unnamed__");
        assert_eq!(file_name("https://example.com/my%20file"), "my file");
        assert!(is_url("HTTPS://x/y") && !is_url("./http.txt"));
        assert!(parse_checksum("sha256:abc").is_err());
        assert!(parse_checksum(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(parse_checksum(&format!("md5:{}", "a".repeat(64))).is_err());
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
    }
}
