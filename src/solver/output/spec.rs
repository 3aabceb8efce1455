//! `--output`/`-o` values, parsed as buildx parses them (`util/buildflags/export.go`
//! `ExportEntry.UnmarshalText`, then `build/opt.go` `CreateExports` for the destinations):
//!
//! * a CSV record of `key=value` fields (`type=oci,dest=out.tar`, `"name=a:1,b:2"` quoted when a
//!   value holds a comma); keys are case-insensitive, values are kept as written;
//! * a single value without `type=` is the local shorthand: `-o DIR` = `type=local,dest=DIR`,
//!   and `-o -` = `type=tar,dest=-` (the root filesystem as a tar stream on stdout);
//! * `type=registry` is `type=image,push=true`;
//! * `oci`, `docker` and `tar` write one file (`dest=-` or no `dest`: stdout, except `docker`,
//!   which without `dest` would load into a daemon kiln does not have); `local` writes a directory
//!   and needs `dest` (never stdout).
//!
//! Attributes an exporter does not know are ignored, as BuildKit's exporters ignore them.
//!
//! Not responsible for: writing anything (see the sibling modules), terminal checks on stdout
//! (the CLI knows whether stdout is a terminal).

use std::path::PathBuf;

use crate::image::ImageRef;

use super::OutputError;

/// Where a single-file output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    File(PathBuf),
    Stdout,
}

/// One parsed `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// `type=image` (and `type=registry`): name the image in the store, push when asked.
    Image { names: Vec<ImageRef>, push: bool },
    /// `type=oci`: an OCI image layout as a tar.
    Oci {
        dest: Destination,
        names: Vec<ImageRef>,
    },
    /// `type=docker`: a tar `docker load` and `podman load` read (OCI layout plus
    /// `manifest.json`), with Docker media types.
    Docker {
        dest: Destination,
        names: Vec<ImageRef>,
    },
    /// `type=local`: the final stage's root filesystem written into a directory.
    Local { dest: PathBuf },
    /// `type=tar`: the final stage's root filesystem as one tar.
    Tar { dest: Destination },
}

impl OutputSpec {
    /// The exporter name, as in `type=`.
    pub fn kind(&self) -> &'static str {
        match self {
            OutputSpec::Image { .. } => "image",
            OutputSpec::Oci { .. } => "oci",
            OutputSpec::Docker { .. } => "docker",
            OutputSpec::Local { .. } => "local",
            OutputSpec::Tar { .. } => "tar",
        }
    }

    /// Whether the output is an image (so the build's image digests mean something for it, and
    /// `-t` names apply to it).
    pub fn is_image(&self) -> bool {
        matches!(
            self,
            OutputSpec::Image { .. } | OutputSpec::Oci { .. } | OutputSpec::Docker { .. }
        )
    }

    /// The names an image output carries (empty for the others).
    pub fn names(&self) -> &[ImageRef] {
        match self {
            OutputSpec::Image { names, .. }
            | OutputSpec::Oci { names, .. }
            | OutputSpec::Docker { names, .. } => names,
            OutputSpec::Local { .. } | OutputSpec::Tar { .. } => &[],
        }
    }

    /// Replace the names of an image output (buildx sets `name=` from `-t` on `image`, `oci` and
    /// `docker` outputs: `build/build.go`).
    pub fn set_names(&mut self, new: Vec<ImageRef>) {
        match self {
            OutputSpec::Image { names, .. }
            | OutputSpec::Oci { names, .. }
            | OutputSpec::Docker { names, .. } => *names = new,
            OutputSpec::Local { .. } | OutputSpec::Tar { .. } => {}
        }
    }

    /// Whether the output writes to stdout.
    pub fn writes_stdout(&self) -> bool {
        matches!(
            self,
            OutputSpec::Oci {
                dest: Destination::Stdout,
                ..
            } | OutputSpec::Docker {
                dest: Destination::Stdout,
                ..
            } | OutputSpec::Tar {
                dest: Destination::Stdout
            }
        )
    }
}

/// Parse one `--output` value.
pub fn parse(value: &str) -> Result<OutputSpec, OutputError> {
    let invalid = |reason: String| OutputError::InvalidSpec {
        value: value.to_owned(),
        reason,
    };
    let fields = csv_fields(value).map_err(invalid)?;
    // The shorthand: one plain field that is not `type=...`.
    if fields.len() == 1 && fields[0] == value && !value.starts_with("type=") {
        return Ok(if value == "-" {
            OutputSpec::Tar {
                dest: Destination::Stdout,
            }
        } else {
            OutputSpec::Local {
                dest: PathBuf::from(value),
            }
        });
    }
    let mut kind = None;
    let mut dest = None;
    let mut attrs = Vec::new();
    for field in &fields {
        let Some((key, val)) = field.split_once('=') else {
            return Err(invalid(format!(
                "invalid value `{field}`: expected key=value"
            )));
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "type" => kind = Some(val.to_owned()),
            "dest" => dest = Some(val.to_owned()),
            other => attrs.push((other.to_owned(), val.to_owned())),
        }
    }
    let kind = kind.ok_or_else(|| OutputError::MissingType {
        value: value.to_owned(),
    })?;
    let attr = |name: &str| {
        attrs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let names = || -> Result<Vec<ImageRef>, OutputError> {
        attr("name")
            .into_iter()
            .flat_map(|n| n.split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| {
                ImageRef::parse(n).map_err(|e| OutputError::InvalidName {
                    name: n.to_owned(),
                    reason: e.to_string(),
                })
            })
            .collect()
    };
    let bool_attr = |name: &str| -> Result<bool, OutputError> {
        match attr(name) {
            None => Ok(false),
            Some(v) => parse_bool(v)
                .ok_or_else(|| invalid(format!("`{name}={v}`: expected true or false"))),
        }
    };
    let file_dest = |kind: &str, dest: Option<String>| -> Result<Destination, OutputError> {
        match dest.as_deref() {
            None | Some("") if kind == "docker" => Err(OutputError::DockerNeedsDest),
            None | Some("" | "-") => Ok(Destination::Stdout),
            Some(path) => Ok(Destination::File(PathBuf::from(path))),
        }
    };
    match kind.as_str() {
        "image" => {
            if dest.is_some() {
                return Err(invalid("the image exporter takes no `dest`".to_owned()));
            }
            Ok(OutputSpec::Image {
                names: names()?,
                push: bool_attr("push")?,
            })
        }
        "registry" => Ok(OutputSpec::Image {
            names: names()?,
            push: true,
        }),
        "oci" | "docker" => {
            if attr("tar").is_some_and(|t| parse_bool(t) == Some(false)) {
                return Err(OutputError::Unsupported {
                    what: format!("type={kind},tar=false (an image layout directory)"),
                });
            }
            let dest = file_dest(&kind, dest)?;
            let names = names()?;
            Ok(if kind == "oci" {
                OutputSpec::Oci { dest, names }
            } else {
                OutputSpec::Docker { dest, names }
            })
        }
        "tar" => Ok(OutputSpec::Tar {
            dest: file_dest("tar", dest)?,
        }),
        "local" => match dest.as_deref() {
            None | Some("") => Err(OutputError::MissingDest {
                kind: "local".to_owned(),
            }),
            Some("-") => Err(OutputError::StdoutNotAllowed {
                kind: "local".to_owned(),
            }),
            Some(path) => Ok(OutputSpec::Local {
                dest: PathBuf::from(path),
            }),
        },
        "" => Err(OutputError::MissingType {
            value: value.to_owned(),
        }),
        _ => Err(OutputError::UnknownType { kind }),
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The fields of one CSV record, as Go's `encoding/csv` reads them: a field is either plain
/// (no quotes inside) or wholly quoted (`"a,b"`, with `""` for a literal quote).
fn csv_fields(record: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = record.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted field".to_owned()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("unexpected `{c}` after a quoted field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("bare `\"` in a non-quoted field".to_owned()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str) -> Destination {
        Destination::File(PathBuf::from(p))
    }

    fn refs(names: &[&str]) -> Vec<ImageRef> {
        names.iter().map(|n| ImageRef::parse(n).unwrap()).collect()
    }

    #[test]
    fn shorthands() {
        assert_eq!(
            parse("out").unwrap(),
            OutputSpec::Local {
                dest: PathBuf::from("out")
            }
        );
        assert_eq!(
            parse("./a/b").unwrap(),
            OutputSpec::Local {
                dest: PathBuf::from("./a/b")
            }
        );
        // As buildx: any single field not starting with `type=` is a directory.
        assert_eq!(
            parse("dest=x").unwrap(),
            OutputSpec::Local {
                dest: PathBuf::from("dest=x")
            }
        );
        assert_eq!(
            parse("-").unwrap(),
            OutputSpec::Tar {
                dest: Destination::Stdout
            }
        );
    }

    #[test]
    fn every_type() {
        assert_eq!(
            parse("type=oci,dest=x.tar").unwrap(),
            OutputSpec::Oci {
                dest: file("x.tar"),
                names: vec![]
            }
        );
        assert_eq!(
            parse("type=docker,dest=x.tar,name=app:1").unwrap(),
            OutputSpec::Docker {
                dest: file("x.tar"),
                names: refs(&["app:1"])
            }
        );
        assert_eq!(
            parse("type=local,dest=out").unwrap(),
            OutputSpec::Local {
                dest: PathBuf::from("out")
            }
        );
        assert_eq!(
            parse("type=tar,dest=fs.tar").unwrap(),
            OutputSpec::Tar {
                dest: file("fs.tar")
            }
        );
        assert_eq!(
            parse("type=tar").unwrap(),
            OutputSpec::Tar {
                dest: Destination::Stdout
            }
        );
        assert_eq!(
            parse("type=oci,dest=-").unwrap(),
            OutputSpec::Oci {
                dest: Destination::Stdout,
                names: vec![]
            }
        );
        assert_eq!(
            parse(r#"type=image,"name=a:1,b:2",push=true"#).unwrap(),
            OutputSpec::Image {
                names: refs(&["a:1", "b:2"]),
                push: true
            }
        );
        assert_eq!(
            parse("type=image").unwrap(),
            OutputSpec::Image {
                names: vec![],
                push: false
            }
        );
        assert_eq!(
            parse("type=registry,name=localhost:5000/x").unwrap(),
            OutputSpec::Image {
                names: refs(&["localhost:5000/x"]),
                push: true
            }
        );
        // Keys are case-insensitive; unknown attributes are ignored.
        assert_eq!(
            parse("TYPE=oci,Dest=x.tar,compression=zstd").unwrap(),
            OutputSpec::Oci {
                dest: file("x.tar"),
                names: vec![]
            }
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse("type=bogus,dest=x"),
            Err(OutputError::UnknownType { kind }) if kind == "bogus"
        ));
        assert!(matches!(
            parse("type=local"),
            Err(OutputError::MissingDest { .. })
        ));
        assert!(matches!(
            parse("type=local,dest=-"),
            Err(OutputError::StdoutNotAllowed { .. })
        ));
        assert!(matches!(
            parse("type=docker"),
            Err(OutputError::DockerNeedsDest)
        ));
        assert!(matches!(
            parse("dest=x.tar,name=a"),
            Err(OutputError::MissingType { .. })
        ));
        assert!(matches!(
            parse("type=oci,dest"),
            Err(OutputError::InvalidSpec { .. })
        ));
        assert!(matches!(
            parse(r#"type=image,"name=a"#),
            Err(OutputError::InvalidSpec { .. })
        ));
        assert!(matches!(
            parse("type=image,push=maybe"),
            Err(OutputError::InvalidSpec { .. })
        ));
        assert!(matches!(
            parse("type=image,name=UPPER:1"),
            Err(OutputError::InvalidName { .. })
        ));
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(
            csv_fields(r#"a=1,"b=2,3","c=""q""""#).unwrap(),
            vec!["a=1", "b=2,3", r#"c="q""#]
        );
        assert_eq!(csv_fields("").unwrap(), vec![""]);
    }
}
