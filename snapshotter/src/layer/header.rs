//! Tar header blocks of a layer entry: ustar, with a PAX extended header in front when ustar
//! cannot hold the path, link target, ids or xattrs.

use super::{Entry, EntryKind, LayerError, Node, Xattr};

/// The header blocks of an entry: a PAX extended header when ustar cannot hold the path, link
/// target or ids (POSIX.1-2001), then the ustar header.
pub(super) fn headers(
    entry: &Entry,
    node: Option<Node>,
    xattrs: &[Xattr],
) -> Result<Vec<u8>, LayerError> {
    let io_err = |source| LayerError::Io {
        path: entry.path.to_string(),
        source,
    };
    let mut header = tar::Header::new_ustar();
    header.set_mode(entry.mode & 0o7777);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(entry.mtime);
    let mut name = entry.path.as_str().to_owned();
    let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
    match &entry.kind {
        EntryKind::Directory => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            name.push('/');
        }
        EntryKind::File { size } => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(*size);
        }
        EntryKind::Symlink { target } => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            if header.set_link_name(target).is_err() {
                pax.push(("linkpath", target.as_bytes().to_vec()));
            }
        }
        EntryKind::Hardlink { target } => {
            header.set_entry_type(tar::EntryType::Link);
            header.set_size(0);
            if header.set_link_name(target.as_str()).is_err() {
                pax.push(("linkpath", target.as_str().as_bytes().to_vec()));
            }
        }
    }
    if let Some(node) = node {
        let (ty, major, minor) = match node {
            Node::CharDevice { major, minor } => (tar::EntryType::Char, major, minor),
            Node::BlockDevice { major, minor } => (tar::EntryType::Block, major, minor),
            Node::Fifo => (tar::EntryType::Fifo, 0, 0),
        };
        header.set_entry_type(ty);
        header.set_device_major(major).map_err(io_err)?;
        header.set_device_minor(minor).map_err(io_err)?;
    }
    if header.set_path(&name).is_err() {
        // Too long for ustar: a PAX `path` record carries the full name (POSIX.1-2001).
        pax.push(("path", name.as_bytes().to_vec()));
        let short: String = name
            .chars()
            .rev()
            .take(90)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        header
            .set_path(short.trim_start_matches('/'))
            .map_err(io_err)?;
    }
    for (key, value) in [("uid", entry.uid), ("gid", entry.gid)] {
        if value > 0o7777777 {
            pax.push((key, value.to_string().into_bytes()));
        }
    }
    let xattr_keys: Vec<String> = xattrs
        .iter()
        .map(|x| format!("SCHILY.xattr.{}", x.name))
        .collect();
    for (key, x) in xattr_keys.iter().zip(xattrs) {
        pax.push((key.as_str(), x.value.clone()));
    }
    header.set_cksum();
    let mut out = Vec::with_capacity(512);
    if !pax.is_empty() {
        let records = pax_records(&pax);
        let mut ext = tar::Header::new_ustar();
        ext.set_size(records.len() as u64);
        ext.set_entry_type(tar::EntryType::XHeader);
        ext.set_cksum();
        out.extend_from_slice(ext.as_bytes());
        out.extend_from_slice(&records);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.extend_from_slice(header.as_bytes());
    Ok(out)
}

/// PAX records: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record, itself
/// included (POSIX.1-2001 pax "extended header").
fn pax_records(records: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut data = Vec::new();
    for (key, value) in records {
        let rest = 3 + key.len() + value.len();
        let mut len = rest + 1;
        while len.to_string().len() + rest != len {
            len = rest + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    data
}
