//! `RUN --mount` values as far as [`outline`](super::outline()) needs them: which secret or
//! SSH socket a mount asks the caller for.
//!
//! Responsible for: BuildKit's mount syntax (CSV fields, `key=value` or a bare boolean key),
//! the secret id's fallback to the target's file name, and SSH's `default` id.
//! Not responsible for: expanding variables in the value (the caller does), validating
//! mounts, or any other mount type.

/// What a `--mount` asks the caller for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum MountRequest {
    Secret { id: String, required: bool },
    Ssh { id: String, required: bool },
}

/// Reads a `--mount` value (`type=secret,id=npm,required`) as BuildKit does (CSV fields,
/// `key=value` or a bare boolean key); `None` for other mount types or when a secret has
/// neither an id nor a target.
pub(super) fn mount_request(value: &str) -> Option<MountRequest> {
    let mut kind = String::from("bind");
    let mut id: Option<String> = None;
    let mut target: Option<String> = None;
    let mut required = false;
    for field in csv_fields(value) {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        match (key.as_str(), val) {
            ("type", Some(v)) => kind = v.to_ascii_lowercase(),
            ("id", Some(v)) => id = Some(v.to_owned()),
            ("target" | "dst" | "destination", Some(v)) => target = Some(v.to_owned()),
            ("required", None) => required = true,
            ("required", Some(v)) => required = parse_bool(v).unwrap_or(false),
            _ => {}
        }
    }
    let id = id.filter(|i| !i.is_empty());
    match kind.as_str() {
        "secret" => {
            let id = id.or_else(|| {
                let target = target?;
                let base = target.trim_end_matches('/').rsplit('/').next()?;
                (!base.is_empty()).then(|| base.to_owned())
            })?;
            Some(MountRequest::Secret { id, required })
        }
        "ssh" => Some(MountRequest::Ssh {
            id: id.unwrap_or_else(|| "default".to_owned()),
            required,
        }),
        _ => None,
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Comma-separated fields; a field may be double-quoted (`""` inside is one quote).
fn csv_fields(s: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_values() {
        assert_eq!(
            mount_request("type=secret,id=npm,required"),
            Some(MountRequest::Secret {
                id: "npm".into(),
                required: true
            })
        );
        assert_eq!(
            mount_request("type=secret,target=/root/.aws/credentials,required=false"),
            Some(MountRequest::Secret {
                id: "credentials".into(),
                required: false
            })
        );
        assert_eq!(
            mount_request("type=ssh,id=github"),
            Some(MountRequest::Ssh {
                id: "github".into(),
                required: false
            })
        );
        assert_eq!(mount_request("type=cache,target=/root/.cache"), None);
        assert_eq!(mount_request("target=/src"), None);
        assert_eq!(mount_request("type=secret"), None);
        assert_eq!(
            csv_fields(r#"type=secret,"id=a,b""#),
            ["type=secret", "id=a,b"]
        );
    }
}
