//! `kiln build -`: what stdin holds, told apart as Docker's CLI does (`build.DetectArchiveReader`
//! in `cli/command/image/build/context.go`): a compressed stream (gzip, bzip2, xz, zstd, by
//! magic bytes) or a tar (a valid tar header in the first 512 bytes) is a build context;
//! anything else is a Dockerfile, built with an empty context.
//!
//! A context archive is extracted into a private temp directory under the store (removed when
//! the [`StdinContext`] is dropped) with [`snapshotter::apply`], so no entry can land outside it
//! (`..`, absolute names, links out: refused or kept inside). Owners and modes are restored as
//! the archive has them. Names that look like OCI whiteouts (`.wh.*`) are treated as such
//! (dropped), the one way this differs from BuildKit's context transfer.
//!
//! Not responsible for: reading the Dockerfile out of the extracted tree (the CLI does that as
//! for a directory context).

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use snapshotter::apply::{ApplyExpect, ApplyOptions, Durability, WhiteoutMode, apply};

use super::ContextError;
use crate::archive::compression::Compression;

/// The size of a tar header block.
const BLOCK: usize = 512;

/// What stdin held.
#[derive(Debug)]
pub enum StdinContent {
    /// A build context, extracted.
    Context(StdinContext),
    /// A Dockerfile; the context is empty.
    Dockerfile(String),
}

/// A build context extracted from stdin; the directory is removed on drop.
#[derive(Debug)]
pub struct StdinContext {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl StdinContext {
    /// The context root.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Remove the extracted tree now (also done on drop), reporting failures.
    pub fn remove(self) -> Result<(), ContextError> {
        self.dir.close().map_err(ContextError::Io)
    }
}

/// An empty context (for a Dockerfile read from stdin), removed on drop like an extracted one.
pub fn empty(scratch_parent: &Path) -> Result<StdinContext, ContextError> {
    fs_err::create_dir_all(scratch_parent)?;
    let dir = tempfile::Builder::new()
        .prefix("context-")
        .tempdir_in(scratch_parent)?;
    let root = dir.path().join("context");
    fs_err::create_dir(&root)?;
    Ok(StdinContext { dir, root })
}

/// The compression of a stream, from its first bytes.
/// What stdin holds: a compressed stream (a compressed tar), a plain tar, or anything else (a
/// Dockerfile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Compressed(Compression),
    Tar,
    Other,
}

fn detect(prefix: &[u8]) -> Format {
    match Compression::detect(prefix) {
        Compression::None if is_tar_header(prefix) => Format::Tar,
        Compression::None => Format::Other,
        compressed => Format::Compressed(compressed),
    }
}

/// Whether `block` starts with a tar header whose checksum is right (what Go's `tar.Reader`
/// checks first when Docker's CLI probes stdin).
fn is_tar_header(block: &[u8]) -> bool {
    let Some(block) = block.get(..BLOCK) else {
        return false;
    };
    let field = &block[148..156];
    let digits: String = field
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .skip_while(|c| *c == ' ')
        .collect();
    let Ok(stored) = u64::from_str_radix(digits.trim(), 8) else {
        return false;
    };
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    stored == sum
}

/// Read stdin (or any stream) and extract it under `scratch_parent` if it is a context.
pub fn read(
    mut input: impl Read + Send,
    scratch_parent: &Path,
) -> Result<StdinContent, ContextError> {
    let mut prefix = Vec::with_capacity(BLOCK);
    (&mut input)
        .take(BLOCK as u64)
        .read_to_end(&mut prefix)
        .map_err(ContextError::Io)?;
    let format = detect(&prefix);
    let stream = Cursor::new(prefix).chain(input);
    if format == Format::Other {
        let mut bytes = Vec::new();
        { stream }
            .read_to_end(&mut bytes)
            .map_err(ContextError::Io)?;
        let text = String::from_utf8(bytes).map_err(|_| ContextError::StdinNotUtf8)?;
        return Ok(StdinContent::Dockerfile(text));
    }
    fs_err::create_dir_all(scratch_parent)?;
    let dir = tempfile::Builder::new()
        .prefix("context-")
        .tempdir_in(scratch_parent)?;
    let root = dir.path().join("context");
    let mut opts = ApplyOptions::new(WhiteoutMode::Delete);
    opts.durability = Durability::NoSync;
    let decoded: Box<dyn Read + Send> = match format {
        Format::Compressed(c @ (Compression::Bzip2 | Compression::Xz)) => {
            Box::new(c.decoder(stream)?)
        }
        // gzip, zstd and plain tar are decoded by `apply`, which sniffs the same magic bytes.
        Format::Compressed(_) | Format::Tar | Format::Other => Box::new(stream),
    };
    apply(decoded, &root, ApplyExpect::default(), &opts)
        .map_err(|e| ContextError::Archive(Box::new(e)))?;
    Ok(StdinContent::Context(StdinContext { dir, root }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, name, content.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn extracted(bytes: Vec<u8>) -> (tempfile::TempDir, StdinContext) {
        let scratch = tempfile::tempdir().unwrap();
        match read(Cursor::new(bytes), scratch.path()).unwrap() {
            StdinContent::Context(c) => (scratch, c),
            StdinContent::Dockerfile(t) => panic!("taken for a Dockerfile: {t:?}"),
        }
    }

    #[test]
    fn a_dockerfile_is_not_an_archive() {
        let scratch = tempfile::tempdir().unwrap();
        let df = "FROM scratch\nCOPY . /\n";
        match read(Cursor::new(df.as_bytes().to_vec()), scratch.path()).unwrap() {
            StdinContent::Dockerfile(t) => assert_eq!(t, df),
            StdinContent::Context(_) => panic!("a Dockerfile was taken for an archive"),
        }
        // Nothing was extracted.
        assert_eq!(
            fs_err::read_dir(scratch.path())
                .map(|d| d.count())
                .unwrap_or(0),
            0
        );
        // Long text (more than one block) is still a Dockerfile.
        let long = format!("FROM scratch\n{}", "# comment\n".repeat(200));
        assert!(matches!(
            read(Cursor::new(long.into_bytes()), scratch.path()).unwrap(),
            StdinContent::Dockerfile(_)
        ));
    }

    #[test]
    fn plain_and_compressed_tars_are_contexts() {
        let tar = tar_of(&[("Dockerfile", "FROM scratch\n"), ("src/a.txt", "a")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&tar).unwrap();
        let bz = bz.finish().unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&tar).unwrap();
        let xz = xz.finish().unwrap();
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        for (what, bytes) in [
            ("tar", tar.clone()),
            ("gzip", gz),
            ("bzip2", bz),
            ("xz", xz),
            ("zstd", zst),
        ] {
            let (_scratch, ctx) = extracted(bytes);
            assert_eq!(
                fs_err::read_to_string(ctx.path().join("Dockerfile")).unwrap(),
                "FROM scratch\n",
                "{what}"
            );
            assert_eq!(
                fs_err::read_to_string(ctx.path().join("src/a.txt")).unwrap(),
                "a",
                "{what}"
            );
            let dir = ctx.path().parent().unwrap().to_path_buf();
            ctx.remove().unwrap();
            assert!(!dir.exists(), "{what}: the temp dir is removed");
        }
    }

    #[test]
    fn entries_cannot_escape() {
        // A raw header naming `../escape` (tar::Builder refuses to write such names itself).
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend_from_slice(&[b'x'; 512]);
        bytes.extend_from_slice(&[0; 1024]);
        let scratch = tempfile::tempdir().unwrap();
        let err = read(Cursor::new(bytes), scratch.path()).unwrap_err();
        assert!(matches!(err, ContextError::Archive(_)), "{err}");
        assert!(!scratch.path().join("escape").exists());
    }
}
