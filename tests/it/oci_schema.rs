//! Validation of OCI documents against the upstream OCI image-spec JSON schemas.
//!
//! Every image manifest, image index, image config, descriptor and `oci-layout` file kiln writes
//! must validate against the schemas vendored (with provenance in `NOTICE`) under
//! `shared/conformance/oci-image-spec/schema/`, next to the workspace.
//!
//! ```ignore
//! use crate::oci_schema::{self, OciKind};
//!
//! oci_schema::assert_valid(OciKind::Manifest, &manifest_bytes);
//! oci_schema::validate(OciKind::Index, &index_json).unwrap();
//! ```
//!
//! The schemas are draft-04 documents with `"id"`s under `https://opencontainers.org/schema/` and
//! relative `$ref`s (`content-descriptor.json`, `defs-descriptor.json#/definitions/digest`, ...).
//! Nothing is fetched from the network: a retriever maps the last path segment of every URI a
//! `$ref` resolves to onto the file of that name in the schema directory (as upstream's own Go
//! tests do with their file-system loader). `format` (`date-time`, `uri`) is asserted, as it is by
//! upstream's validator for draft-04.
//!
//! Two deliberate additions to the schemas, both MUSTs of the image-spec prose the schemas miss:
//! - for [`OciKind::Index`] every `manifests[]` entry is also validated as a content descriptor
//!   (the index schema types its `size` as `int64`, so it would accept a negative size);
//! - digests of the registered algorithms must have the registered encoding (descriptor.md:
//!   `sha256` is 64 and `sha512` 128 lowercase hex characters), for every descriptor's `digest`
//!   and a config's `rootfs.diff_ids`; the schema's digest pattern alone accepts `sha256:xyz`.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::Value;

/// The vendored OCI image-spec schema directory (`shared/` sits beside the workspace root).
const SCHEMA_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/conformance/oci-image-spec/schema"
);

/// The kinds of OCI documents there is a schema for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OciKind {
    /// `application/vnd.oci.image.manifest.v1+json`
    Manifest,
    /// `application/vnd.oci.image.index.v1+json` (also a layout's `index.json`)
    Index,
    /// `application/vnd.oci.image.config.v1+json`
    Config,
    /// `application/vnd.oci.descriptor.v1+json`
    Descriptor,
    /// The `oci-layout` file of an OCI image layout.
    Layout,
}

impl OciKind {
    /// The schema file (in [`SCHEMA_DIR`]) for this kind.
    fn schema_file(self) -> &'static str {
        match self {
            OciKind::Manifest => "image-manifest-schema.json",
            OciKind::Index => "image-index-schema.json",
            OciKind::Config => "config-schema.json",
            OciKind::Descriptor => "content-descriptor.json",
            OciKind::Layout => "image-layout-schema.json",
        }
    }

    /// The compiled validator for this kind, built on first use.
    fn validator(self) -> &'static Validator {
        static VALIDATORS: [OnceLock<Validator>; 5] = [const { OnceLock::new() }; 5];
        let slot = match self {
            OciKind::Manifest => 0,
            OciKind::Index => 1,
            OciKind::Config => 2,
            OciKind::Descriptor => 3,
            OciKind::Layout => 4,
        };
        VALIDATORS[slot].get_or_init(|| compile(self))
    }
}

/// The schema directory; panics with its path if it is missing.
fn schema_dir() -> &'static Path {
    let dir = Path::new(SCHEMA_DIR);
    assert!(
        dir.is_dir(),
        "OCI image-spec schema directory not found at {} (expected \
         shared/conformance/oci-image-spec/schema beside the workspace root; CI always has it)",
        dir.display()
    );
    dir
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = fs_err::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("{}: invalid JSON: {e}", path.display()))
}

fn compile(kind: OciKind) -> Validator {
    let path = schema_dir().join(kind.schema_file());
    let schema = read_json(&path).unwrap_or_else(|e| panic!("cannot load OCI schema: {e}"));
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .with_retriever(LocalSchemaDir(schema_dir().to_path_buf()))
        .build(&schema)
        .unwrap_or_else(|e| panic!("cannot compile OCI schema {}: {e}", path.display()))
}

/// Resolves a `$ref` target offline: the last path segment of its URI names a file in the schema
/// directory (`https://opencontainers.org/schema/image/defs-descriptor.json` -> `defs-descriptor.json`).
struct LocalSchemaDir(PathBuf);

impl Retrieve for LocalSchemaDir {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn Error + Send + Sync>> {
        let name = uri.path().as_str().rsplit('/').next().unwrap_or_default();
        let is_plain_name = name.ends_with(".json")
            && !name.starts_with('.')
            && !name.contains(['\\', '%'])
            && Path::new(name).file_name() == Some(name.as_ref());
        if !is_plain_name {
            return Err(format!("no local OCI schema for {}", uri.as_str()).into());
        }
        let path = self.0.join(name);
        if !path.is_file() {
            return Err(format!(
                "no local OCI schema for {} ({} does not exist)",
                uri.as_str(),
                path.display()
            )
            .into());
        }
        Ok(read_json(&path)?)
    }
}

/// Validates `doc` against the OCI schema for `kind`.
///
/// `Err` lists every violation, one per line, each with the JSON pointer of the offending value
/// (`(root)` for the document itself) and the schema keyword that rejected it.
pub fn validate(kind: OciKind, doc: &Value) -> Result<(), String> {
    let mut errors = Vec::new();
    collect_errors(kind, doc, "", &mut errors);
    if kind == OciKind::Index
        && let Some(manifests) = doc.get("manifests").and_then(Value::as_array)
    {
        for (i, entry) in manifests.iter().enumerate() {
            collect_errors(
                OciKind::Descriptor,
                entry,
                &format!("/manifests/{i}"),
                &mut errors,
            );
        }
    }
    for (pointer, digest) in digests(kind, doc) {
        if let Err(e) = check_registered_digest(digest) {
            errors.push(format!(
                "  {pointer}: {digest:?} {e} [image-spec descriptor.md: registered algorithms]"
            ));
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    // The descriptor pass over an index's entries repeats some of the index schema's findings.
    let mut unique: Vec<String> = Vec::with_capacity(errors.len());
    for e in errors {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    Err(format!(
        "{} OCI schema violation(s) ({:?}, {}):\n{}",
        unique.len(),
        kind,
        kind.schema_file(),
        unique.join("\n")
    ))
}

fn collect_errors(kind: OciKind, doc: &Value, prefix: &str, out: &mut Vec<String>) {
    for error in kind.validator().iter_errors(doc) {
        let pointer = format!("{prefix}{}", error.instance_path().as_str());
        let at = if pointer.is_empty() {
            "(root)"
        } else {
            &pointer
        };
        out.push(format!(
            "  {at}: {error} [{}]",
            error.schema_path().as_str()
        ));
    }
}

/// The digest strings in `doc` (with their JSON pointers) that must use a registered encoding.
fn digests(kind: OciKind, doc: &Value) -> Vec<(String, &str)> {
    let mut found = Vec::new();
    match kind {
        OciKind::Descriptor => descriptor_digest(String::new(), doc, &mut found),
        OciKind::Manifest | OciKind::Index => {
            for key in ["config", "subject"] {
                if let Some(d) = doc.get(key) {
                    descriptor_digest(format!("/{key}"), d, &mut found);
                }
            }
            for key in ["layers", "manifests"] {
                for (pointer, d) in array_items(doc, key) {
                    descriptor_digest(pointer, d, &mut found);
                }
            }
        }
        OciKind::Config => {
            if let Some(rootfs) = doc.get("rootfs") {
                for (pointer, d) in array_items(rootfs, "diff_ids") {
                    if let Some(digest) = d.as_str() {
                        found.push((format!("/rootfs{pointer}"), digest));
                    }
                }
            }
        }
        OciKind::Layout => {}
    }
    found
}

fn descriptor_digest<'a>(pointer: String, d: &'a Value, found: &mut Vec<(String, &'a str)>) {
    if let Some(digest) = d.get("digest").and_then(Value::as_str) {
        found.push((format!("{pointer}/digest"), digest));
    }
}

/// The items of `doc[key]` with their pointers relative to `doc`, if it is an array.
fn array_items<'a>(doc: &'a Value, key: &str) -> Vec<(String, &'a Value)> {
    let items = doc.get(key).and_then(Value::as_array).into_iter().flatten();
    items
        .enumerate()
        .map(|(i, v)| (format!("/{key}/{i}"), v))
        .collect()
}

/// descriptor.md: `sha256` digests MUST be `[a-f0-9]{64}`, `sha512` digests `[a-f0-9]{128}`.
/// Other algorithms are allowed with any encoding the schema's digest pattern accepts.
fn check_registered_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return Ok(()); // the schema's pattern reports it
    };
    let hex_len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Ok(()),
    };
    let is_lower_hex = encoded
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if encoded.len() == hex_len && is_lower_hex {
        Ok(())
    } else {
        Err(format!(
            "is not a valid {algorithm} digest ({hex_len} lowercase hex characters expected)"
        ))
    }
}

/// Parses `bytes` as JSON and validates it against the OCI schema for `kind`; panics with every
/// violation and the document on failure.
pub fn assert_valid(kind: OciKind, bytes: &[u8]) {
    let doc: Value = serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!(
            "{kind:?} document is not valid JSON: {e}\n--- document ---\n{}",
            String::from_utf8_lossy(bytes)
        )
    });
    if let Err(errors) = validate(kind, &doc) {
        let pretty = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string());
        panic!("{errors}\n--- document ---\n{pretty}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EXAMPLES_DIR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/conformance/oci-image-spec/examples"
    );

    /// The kind an example is for, from its `<name>.<kind>.json` suffix.
    fn kind_of_example(name: &str) -> OciKind {
        let suffixes = [
            (".manifest.json", OciKind::Manifest),
            (".index.json", OciKind::Index),
            (".config.json", OciKind::Config),
            (".descriptor.json", OciKind::Descriptor),
            (".layout.json", OciKind::Layout),
        ];
        suffixes
            .iter()
            .find(|(suffix, _)| name.ends_with(suffix))
            .map(|&(_, kind)| kind)
            .unwrap_or_else(|| panic!("example {name} has no known <kind>.json suffix"))
    }

    fn example(name: &str) -> Value {
        read_json(&Path::new(EXAMPLES_DIR).join(name)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Asserts `doc` fails as `kind` and that the report names `pointer`.
    #[track_caller]
    fn assert_invalid_at(kind: OciKind, doc: &Value, pointer: &str) -> String {
        let errors = match validate(kind, doc) {
            Ok(()) => panic!("{kind:?} document unexpectedly valid:\n{doc:#}"),
            Err(errors) => errors,
        };
        assert!(
            errors.contains(&format!("  {pointer}: ")),
            "expected a violation at {pointer}, got:\n{errors}"
        );
        errors
    }

    /// Every upstream spec example validates as the kind its file name says. None of them is
    /// meant to be invalid: per NOTICE they are exactly the blocks upstream's `spec_test.go`
    /// validates as valid.
    #[test]
    fn upstream_examples_are_valid() {
        let mut seen = Vec::new();
        for entry in fs_err::read_dir(EXAMPLES_DIR).expect("examples dir") {
            let path = entry.expect("examples dir entry").path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let kind = kind_of_example(&name);
            let bytes = fs_err::read(&path).unwrap();
            let doc: Value = serde_json::from_slice(&bytes).unwrap();
            if let Err(e) = validate(kind, &doc) {
                panic!("upstream example {name} rejected:\n{e}");
            }
            assert_valid(kind, &bytes);
            seen.push(kind);
        }
        for kind in [
            OciKind::Manifest,
            OciKind::Index,
            OciKind::Config,
            OciKind::Descriptor,
            OciKind::Layout,
        ] {
            assert!(seen.contains(&kind), "no upstream example for {kind:?}");
        }
        assert!(
            seen.len() >= 10,
            "expected the 10 upstream examples, saw {seen:?}"
        );
    }

    #[test]
    fn manifest_schema_version_1_is_rejected() {
        let mut doc = example("manifest-1.manifest.json");
        doc["schemaVersion"] = json!(1);
        assert_invalid_at(OciKind::Manifest, &doc, "/schemaVersion");
    }

    #[test]
    fn manifest_without_required_fields_is_rejected() {
        let mut doc = example("manifest-1.manifest.json");
        doc.as_object_mut().unwrap().remove("config");
        let errors = assert_invalid_at(OciKind::Manifest, &doc, "(root)");
        assert!(errors.contains("config"), "{errors}");
    }

    #[test]
    fn manifest_layers_not_an_array_is_rejected() {
        let mut doc = example("manifest-1.manifest.json");
        doc["layers"] = doc["layers"][0].clone();
        assert_invalid_at(OciKind::Manifest, &doc, "/layers");
        doc["layers"] = json!("sha256:abc");
        assert_invalid_at(OciKind::Manifest, &doc, "/layers");
        doc["layers"] = json!([]);
        assert_invalid_at(OciKind::Manifest, &doc, "/layers");
    }

    /// Referenced schemas (`content-descriptor.json`, `defs-descriptor.json`) are really applied.
    #[test]
    fn manifest_bad_descriptors_are_rejected() {
        let mut doc = example("manifest-1.manifest.json");
        doc["layers"][1]["digest"] = json!("sha256:xyz!");
        assert_invalid_at(OciKind::Manifest, &doc, "/layers/1/digest");

        let mut doc = example("manifest-1.manifest.json");
        doc["config"]["size"] = json!(-1);
        assert_invalid_at(OciKind::Manifest, &doc, "/config/size");

        let mut doc = example("manifest-1.manifest.json");
        doc["layers"][0]["mediaType"] = json!("not a media type");
        assert_invalid_at(OciKind::Manifest, &doc, "/layers/0/mediaType");

        let mut doc = example("manifest-1.manifest.json");
        doc["annotations"]["com.example.key1"] = json!(1);
        assert_invalid_at(OciKind::Manifest, &doc, "/annotations/com.example.key1");
    }

    /// `Err` reports every violation, not just the first.
    #[test]
    fn every_violation_is_reported() {
        let mut doc = example("manifest-1.manifest.json");
        doc["schemaVersion"] = json!(1);
        doc["layers"][2]["digest"] = json!("sha256:xyz!");
        doc["subject"]["size"] = json!(-5);
        let errors = assert_invalid_at(OciKind::Manifest, &doc, "/schemaVersion");
        for pointer in ["/layers/2/digest", "/subject/size"] {
            assert!(errors.contains(&format!("  {pointer}: ")), "{errors}");
        }
    }

    #[test]
    fn descriptor_bad_digest_is_rejected() {
        let mut doc = example("descriptor-1.descriptor.json");
        for bad in ["sha256:xyz!", "sha256", "SHA256:abc", ":abc", "sha256:", ""] {
            doc["digest"] = json!(bad);
            assert_invalid_at(OciKind::Descriptor, &doc, "/digest");
        }
    }

    /// `sha256:xyz` passes the schema's digest pattern; the registered-algorithm check rejects it.
    #[test]
    fn registered_algorithm_digests_must_be_lowercase_hex() {
        let sha256 = "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270";
        let mut doc = example("descriptor-1.descriptor.json");
        for bad in [
            "sha256:xyz",
            "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a43335012",
            "sha256:5B0BCABD1ED22E9FB1310CF6C2DEC7CDEF19F0AD69EFA1F392E94A4333501270",
            "sha512:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
        ] {
            doc["digest"] = json!(bad);
            assert_invalid_at(OciKind::Descriptor, &doc, "/digest");
        }
        // Valid: a real sha256, a 128-hex sha512, and an unregistered algorithm (spec example).
        for good in [
            sha256.to_owned(),
            format!("sha512:{}", "0a".repeat(64)),
            "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8".to_owned(),
        ] {
            doc["digest"] = json!(good);
            validate(OciKind::Descriptor, &doc).unwrap();
        }

        let mut doc = example("manifest-1.manifest.json");
        doc["config"]["digest"] = json!("sha256:xyz");
        doc["layers"][2]["digest"] = json!("sha256:xyz");
        doc["subject"]["digest"] = json!("sha256:xyz");
        let errors = assert_invalid_at(OciKind::Manifest, &doc, "/config/digest");
        for pointer in ["/layers/2/digest", "/subject/digest"] {
            assert!(errors.contains(&format!("  {pointer}: ")), "{errors}");
        }

        let mut doc = example("image-index-1.index.json");
        doc["manifests"][1]["digest"] = json!("sha256:xyz");
        assert_invalid_at(OciKind::Index, &doc, "/manifests/1/digest");

        let mut doc = example("config-1.config.json");
        doc["rootfs"]["diff_ids"][1] = json!("sha256:xyz");
        assert_invalid_at(OciKind::Config, &doc, "/rootfs/diff_ids/1");
    }

    #[test]
    fn descriptor_negative_or_fractional_size_is_rejected() {
        let mut doc = example("descriptor-1.descriptor.json");
        doc["size"] = json!(-1);
        assert_invalid_at(OciKind::Descriptor, &doc, "/size");
        doc["size"] = json!(1.5);
        assert_invalid_at(OciKind::Descriptor, &doc, "/size");
        doc["size"] = json!("7682");
        assert_invalid_at(OciKind::Descriptor, &doc, "/size");
    }

    #[test]
    fn descriptor_bad_fields_are_rejected() {
        let mut doc = example("descriptor-2.descriptor.json");
        doc["urls"] = json!(["not a uri"]);
        assert_invalid_at(OciKind::Descriptor, &doc, "/urls/0");

        let mut doc = example("manifest-2.descriptor.json");
        doc["data"] = json!(123);
        assert_invalid_at(OciKind::Descriptor, &doc, "/data");

        let mut doc = example("descriptor-1.descriptor.json");
        doc.as_object_mut().unwrap().remove("mediaType");
        assert_invalid_at(OciKind::Descriptor, &doc, "(root)");
    }

    #[test]
    fn config_without_architecture_is_rejected() {
        let mut doc = example("config-1.config.json");
        doc.as_object_mut().unwrap().remove("architecture");
        let errors = assert_invalid_at(OciKind::Config, &doc, "(root)");
        assert!(errors.contains("architecture"), "{errors}");
    }

    #[test]
    fn config_bad_fields_are_rejected() {
        let mut doc = example("config-1.config.json");
        doc["rootfs"]["type"] = json!("layer");
        assert_invalid_at(OciKind::Config, &doc, "/rootfs/type");

        let mut doc = example("config-1.config.json");
        doc["created"] = json!("31 Oct 2015");
        assert_invalid_at(OciKind::Config, &doc, "/created");

        let mut doc = example("config-1.config.json");
        doc["config"]["Env"] = json!("PATH=/bin");
        assert_invalid_at(OciKind::Config, &doc, "/config/Env");

        let mut doc = example("config-1.config.json");
        doc["config"]["ExposedPorts"]["8080/tcp"] = json!(true);
        assert_invalid_at(OciKind::Config, &doc, "/config/ExposedPorts/8080~1tcp");

        // `null` is allowed for Cmd/Entrypoint/Volumes/Labels, as Docker writes it.
        let mut doc = example("config-1.config.json");
        doc["config"]["Cmd"] = Value::Null;
        doc["config"]["Labels"] = Value::Null;
        validate(OciKind::Config, &doc).unwrap();
    }

    #[test]
    fn index_bad_documents_are_rejected() {
        let mut doc = example("image-index-1.index.json");
        doc["schemaVersion"] = json!(1);
        assert_invalid_at(OciKind::Index, &doc, "/schemaVersion");

        let mut doc = example("image-index-1.index.json");
        doc["manifests"][0]["digest"] = json!("sha256:xyz!");
        assert_invalid_at(OciKind::Index, &doc, "/manifests/0/digest");

        let mut doc = example("image-index-1.index.json");
        doc["manifests"][1]["platform"]
            .as_object_mut()
            .unwrap()
            .remove("os");
        assert_invalid_at(OciKind::Index, &doc, "/manifests/1/platform");

        // The index schema alone would accept this (`int64`); the descriptor pass rejects it.
        let mut doc = example("image-index-1.index.json");
        doc["manifests"][0]["size"] = json!(-1);
        assert_invalid_at(OciKind::Index, &doc, "/manifests/0/size");

        let mut doc = example("image-index-1.index.json");
        doc["manifests"] = json!({});
        assert_invalid_at(OciKind::Index, &doc, "/manifests");
    }

    #[test]
    fn layout_bad_version_is_rejected() {
        assert_invalid_at(
            OciKind::Layout,
            &json!({"imageLayoutVersion": "1.1.0"}),
            "/imageLayoutVersion",
        );
        assert_invalid_at(OciKind::Layout, &json!({}), "(root)");
    }

    #[test]
    fn kinds_are_not_interchangeable() {
        assert!(validate(OciKind::Manifest, &example("image-index-1.index.json")).is_err());
        assert!(validate(OciKind::Index, &example("manifest-1.manifest.json")).is_err());
        assert!(validate(OciKind::Config, &example("descriptor-1.descriptor.json")).is_err());
        assert!(validate(OciKind::Descriptor, &example("config-1.config.json")).is_err());
        assert!(validate(OciKind::Layout, &example("config-1.config.json")).is_err());
    }

    #[test]
    fn retriever_serves_only_schema_dir_files() {
        let retriever = LocalSchemaDir(schema_dir().to_path_buf());
        let ok =
            jsonschema::uri::from_str("https://opencontainers.org/schema/image/defs.json").unwrap();
        assert!(retriever.retrieve(&ok).is_ok());
        for bad in [
            "https://opencontainers.org/schema/image/nope.json",
            "https://opencontainers.org/schema/image/LICENSE",
            "https://opencontainers.org/schema/image/..%2FNOTICE.json",
            "https://opencontainers.org/schema/image/",
        ] {
            let uri = jsonschema::uri::from_str(bad).unwrap();
            assert!(retriever.retrieve(&uri).is_err(), "{bad} was served");
        }
    }

    #[test]
    #[should_panic(expected = "/schemaVersion")]
    fn assert_valid_panics_with_pointer() {
        assert_valid(
            OciKind::Manifest,
            br#"{"schemaVersion": 1, "config": {}, "layers": []}"#,
        );
    }

    #[test]
    #[should_panic(expected = "not valid JSON")]
    fn assert_valid_panics_on_bad_json() {
        assert_valid(OciKind::Layout, b"{\"imageLayoutVersion\": ");
    }
}
