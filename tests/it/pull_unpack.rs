//! A pull that unpacks while it downloads (`registry::pull_unpacking`, what `kiln pull` does),
//! against Debian's `docker-registry`: layers reach the unpack function bottom first, each once,
//! marked verified when this pull checked their digest and DiffID; whiteouts of a later layer
//! delete (copy driver) or hide (overlay driver) an earlier layer's files; a layer whose DiffID
//! is wrong is refused with no blob, no snapshot and no reference left; an unpack failure stops
//! the pull before the reference is set.
//! `cargo test --test it pull_unpack`.

use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Mutex;

use kiln::image::{Descriptor, ImageRef, media_type};
use kiln::registry::{self, NoopObserver, ReadyLayer, RegistryError, RegistryOptions};
use kiln::solver::rootfs::{self, Snapshots};
use kiln::store::Store;
use snapshotter::snapshot::{ActiveKey, Kind, SnapshotRef, Snapshotter, StorageDriver};
use snapshotter::{ChainId, DiffId, Digest};

use crate::harness::{self, Registry, skip_unless};

/// One tar entry: a file with content, or (`None`) a directory.
type TarEntry<'a> = (&'a str, Option<&'a [u8]>);

fn tar_of(entries: &[TarEntry<'_>]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        match content {
            Some(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                header.set_cksum();
                tar.append_data(&mut header, path, *bytes).unwrap();
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                header.set_mode(0o755);
                header.set_cksum();
                tar.append_data(&mut header, path, &[][..]).unwrap();
            }
        }
    }
    tar.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Three layers: files; a plain-tar layer deleting one of them with a whiteout; a gzip layer
/// making a directory opaque. With `bad_diff_id`, the config lists a wrong DiffID for the last.
struct Image {
    blobs: Vec<Vec<u8>>,
    layers: Vec<Descriptor>,
    diff_ids: Vec<DiffId>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

impl Image {
    fn new(bad_diff_id: bool) -> Self {
        let big: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let tars = [
            tar_of(&[
                ("a", None),
                ("a/keep", Some(b"keep")),
                ("a/gone", Some(b"gone")),
                ("dir", None),
                ("dir/old", Some(&big)),
            ]),
            tar_of(&[
                ("a/.wh.gone", Some(b"")),
                ("b", None),
                ("b/new", Some(b"new")),
            ]),
            tar_of(&[
                ("dir", None),
                ("dir/.wh..wh..opq", Some(b"")),
                ("dir/fresh", Some(b"fresh")),
            ]),
        ];
        let mut diff_ids: Vec<DiffId> = tars.iter().map(|t| DiffId(Digest::of(t))).collect();
        let blobs = vec![gzip(&tars[0]), tars[1].clone(), gzip(&tars[2])];
        let kinds = [
            media_type::OCI_LAYER_GZIP,
            media_type::OCI_LAYER_TAR,
            media_type::OCI_LAYER_GZIP,
        ];
        let layers: Vec<Descriptor> = blobs
            .iter()
            .zip(kinds)
            .map(|(b, kind)| Descriptor::new(kind, Digest::of(b), b.len() as u64))
            .collect();
        if bad_diff_id {
            diff_ids[2] = DiffId(Digest::of(b"not the layer"));
        }
        let plain: Vec<Digest> = diff_ids.iter().map(|d| d.0).collect();
        let (config, manifest) = crate::support::oci_image_json(&plain, &layers);
        Self {
            blobs,
            layers,
            diff_ids,
            config,
            manifest,
        }
    }

    /// Push the image to `reg` as `app:v1` (from a scratch store) and return its reference.
    fn publish(&self, reg: &Registry, dir: &Path) -> ImageRef {
        let store = Store::open(&dir.join("source")).unwrap();
        for bytes in self.blobs.iter().chain([&self.config, &self.manifest]) {
            store.content().put(bytes).unwrap();
        }
        let desc = Descriptor::new(
            media_type::OCI_MANIFEST,
            Digest::of(&self.manifest),
            self.manifest.len() as u64,
        );
        let local = ImageRef::parse("local/app:v1").unwrap();
        store.set_ref(&local, &desc).unwrap();
        let image = store.image(&desc).unwrap();
        let dest = ImageRef::parse(&format!("{}/app:v1", reg.host_port())).unwrap();
        registry::push(
            &store,
            &image,
            &dest,
            &RegistryOptions::default(),
            &NoopObserver,
        )
        .unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
        dest
    }

    fn chain(&self, top: usize) -> ChainId {
        ChainId::of_stack(&self.diff_ids[..top]).unwrap()
    }
}

/// Pull `reference` into `store`, unpacking with `driver` as `kiln pull` does, and record each
/// call: `(layers handed over, verified flags)`.
fn pull_recording(
    store: &Store,
    reference: &ImageRef,
    driver: StorageDriver,
    fail_at: Option<usize>,
) -> (anyhow::Result<()>, Vec<(usize, Vec<bool>)>) {
    let snapshots = Snapshots::new(store, Some(driver));
    let calls = Mutex::new(Vec::new());
    let unpack = |ready: ReadyLayer<'_>| -> anyhow::Result<()> {
        calls
            .lock()
            .unwrap()
            .push((ready.layers.len(), ready.verified.to_vec()));
        if fail_at == Some(ready.layers.len()) {
            anyhow::bail!("unpack refused layer {}", ready.layers.len());
        }
        rootfs::ensure_chain_verified(
            snapshots.get()?,
            store.content(),
            ready.layers,
            ready.diff_ids,
            ready.verified,
        )?;
        Ok(())
    };
    let result = registry::pull_unpacking(
        store,
        reference,
        &RegistryOptions::default(),
        &NoopObserver,
        &unpack,
    )
    .map(drop);
    (result, calls.into_inner().unwrap())
}

/// `(committed, other)` snapshots of `store` for `driver`.
fn snapshot_counts(store: &Store, driver: StorageDriver) -> (usize, usize) {
    let sn = snapshotter::snapshot::open(&store.snapshots_dir(), Some(driver)).unwrap();
    let all = sn.walk().unwrap();
    let committed = all.iter().filter(|i| i.kind == Kind::Committed).count();
    (committed, all.len() - committed)
}

#[test]
fn layers_are_unpacked_in_order_with_whiteouts_of_later_layers_copy_driver() {
    let reg = skip_unless!(Registry::start());
    let dir = harness::tempdir();
    let img = Image::new(false);
    let reference = img.publish(&reg, dir.path());
    let store = Store::open(&dir.path().join("pulled")).unwrap();

    let (result, calls) = pull_recording(&store, &reference, StorageDriver::Copy, None);
    result.unwrap();
    // Bottom first, once each, every layer verified by this pull (gzip and plain tar alike).
    assert_eq!(
        calls,
        [
            (1, vec![true]),
            (2, vec![true, true]),
            (3, vec![true, true, true])
        ]
    );
    assert_eq!(snapshot_counts(&store, StorageDriver::Copy), (3, 0));
    assert!(store.resolve(&reference).unwrap().is_some());

    // The top snapshot's tree: layer 1's whiteout deleted `a/gone`, layer 2's opaque
    // directory dropped `dir/old`; everything else of the lower layers is there.
    let sn =
        snapshotter::snapshot::open(&store.snapshots_dir(), Some(StorageDriver::Copy)).unwrap();
    let top = sn.committed_for_chain(&img.chain(3)).unwrap().unwrap();
    let key = ActiveKey::new("pull-unpack-view").unwrap();
    let view = sn.view(key.clone(), Some(&top)).unwrap();
    let tree = view.mounts().source().to_path_buf();
    let read = |p: &str| fs_err::read(tree.join(p)).ok();
    assert_eq!(read("a/keep").as_deref(), Some(&b"keep"[..]));
    assert_eq!(read("a/gone"), None, "deleted by layer 1's whiteout");
    assert_eq!(read("b/new").as_deref(), Some(&b"new"[..]));
    assert_eq!(
        read("dir/old"),
        None,
        "hidden by layer 2's opaque directory"
    );
    assert_eq!(read("dir/fresh").as_deref(), Some(&b"fresh"[..]));
    assert!(!tree.join("a/.wh.gone").exists());
    assert!(!tree.join("dir/.wh..wh..opq").exists());
    sn.remove(SnapshotRef::Active(&key)).unwrap();

    // Pulled again: blobs present (not verified by this pull), snapshots present (nothing
    // applied), and the unpack function still sees every layer in order.
    let (result, calls) = pull_recording(&store, &reference, StorageDriver::Copy, None);
    result.unwrap();
    assert_eq!(
        calls,
        [
            (1, vec![false]),
            (2, vec![false, false]),
            (3, vec![false, false, false])
        ]
    );
    assert_eq!(snapshot_counts(&store, StorageDriver::Copy), (3, 0));
}

#[test]
fn whiteouts_of_later_layers_become_overlay_whiteouts() {
    let reg = skip_unless!(Registry::start());
    skip_unless!(harness::root_required());
    let dir = harness::tempdir();
    let img = Image::new(false);
    let reference = img.publish(&reg, dir.path());
    let store = Store::open(&dir.path().join("pulled")).unwrap();

    let (result, _) = pull_recording(&store, &reference, StorageDriver::Overlay, None);
    result.unwrap();
    assert_eq!(snapshot_counts(&store, StorageDriver::Overlay), (3, 0));
    let sn =
        snapshotter::snapshot::open(&store.snapshots_dir(), Some(StorageDriver::Overlay)).unwrap();
    let layer_dir = |top: usize| {
        let name = sn.committed_for_chain(&img.chain(top)).unwrap().unwrap();
        sn.committed_layer_dir(&name).unwrap().unwrap()
    };
    // Layer 0 holds its own files; layer 1 a 0/0 character device where `a/gone` was.
    assert_eq!(fs_err::read(layer_dir(1).join("a/gone")).unwrap(), b"gone");
    let whiteout = fs_err::symlink_metadata(layer_dir(2).join("a/gone")).unwrap();
    assert!(whiteout.file_type().is_char_device(), "{whiteout:?}");
    assert_eq!(whiteout.rdev(), 0);
    assert!(!layer_dir(2).join("a/.wh.gone").exists());
    // Layer 2: `dir` is opaque, so the lower `dir/old` is hidden in the merged view.
    let mut value = [0u8; 8];
    let n = rustix::fs::getxattr(
        layer_dir(3).join("dir"),
        "trusted.overlay.opaque",
        &mut value,
    )
    .unwrap();
    assert_eq!(&value[..n], b"y");
    assert!(!layer_dir(3).join("dir/old").exists());
}

#[test]
fn a_layer_with_a_wrong_diff_id_leaves_no_blob_snapshot_or_reference() {
    let reg = skip_unless!(Registry::start());
    let dir = harness::tempdir();
    let img = Image::new(true);
    let reference = img.publish(&reg, dir.path());
    let store = Store::open(&dir.path().join("pulled")).unwrap();

    let (result, calls) = pull_recording(&store, &reference, StorageDriver::Copy, None);
    let err = result.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        matches!(
            err.downcast_ref::<RegistryError>(),
            Some(RegistryError::DigestMismatch { .. })
        ),
        "{text}"
    );
    assert!(text.contains("(DiffID)"), "{text}");
    assert!(!store.content().contains(&img.layers[2].digest));
    assert!(store.refs().unwrap().is_empty());
    // The bad layer never reached the unpack function; no snapshot holds it, and nothing
    // active is left behind. (The layers below it are valid and may have been unpacked.)
    assert!(calls.iter().all(|(top, _)| *top < 3), "{calls:?}");
    let sn =
        snapshotter::snapshot::open(&store.snapshots_dir(), Some(StorageDriver::Copy)).unwrap();
    assert!(sn.committed_for_chain(&img.chain(3)).unwrap().is_none());
    let (committed, other) = snapshot_counts(&store, StorageDriver::Copy);
    assert_eq!((committed <= 2, other), (true, 0));
    let ingest = fs_err::read_dir(store.root().join("ingest")).map_or(0, Iterator::count);
    assert_eq!(ingest, 0);
}

#[test]
fn an_unpack_failure_stops_the_pull_before_the_reference() {
    let reg = skip_unless!(Registry::start());
    let dir = harness::tempdir();
    let img = Image::new(false);
    let reference = img.publish(&reg, dir.path());
    let store = Store::open(&dir.path().join("pulled")).unwrap();

    let (result, calls) = pull_recording(&store, &reference, StorageDriver::Copy, Some(2));
    let err = result.unwrap_err();
    assert_eq!(err.to_string(), "unpack refused layer 2");
    assert_eq!(
        calls.len(),
        2,
        "nothing is unpacked after the failure: {calls:?}"
    );
    assert!(store.refs().unwrap().is_empty());
    assert!(
        !store.content().contains(&Digest::of(&img.manifest)),
        "the manifest is stored only once the image is complete"
    );
}
