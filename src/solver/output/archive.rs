//! `type=oci` and `type=docker` build outputs: the image written as an archive by
//! [`crate::archive::write`] (one image, its `--output` names, no legacy `repositories` file, as
//! BuildKit's exporter writes none).
//!
//! Not responsible for: the archive format itself (`crate::archive`), where the bytes go.

use std::io::Write;

use crate::archive::{self as image_archive, ArchiveError, SaveImage, WriteOptions};
use crate::image::ImageRef;
use crate::store::{Store, StoredImage};

use super::OutputError;

pub use image_archive::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, ArchiveFormat, ArchivedManifest,
};

/// Write `image` as a `format` archive to `out`; returns the manifest descriptor it holds.
pub fn write_archive(
    store: &Store,
    image: &StoredImage,
    names: &[ImageRef],
    format: ArchiveFormat,
    out: impl Write,
) -> Result<ArchivedManifest, OutputError> {
    let images = [SaveImage {
        image: image.clone(),
        names: names.to_vec(),
    }];
    let options = WriteOptions {
        format,
        repositories: false,
    };
    let mut written =
        image_archive::write_archive(store, &images, options, out).map_err(|e| match e {
            ArchiveError::Store(s) => OutputError::Store(s),
            ArchiveError::Write(io) | ArchiveError::Read(io) => OutputError::Stream(io),
            other => OutputError::Stream(std::io::Error::other(other)),
        })?;
    Ok(written.remove(0))
}
