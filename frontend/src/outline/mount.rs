//! `RUN --mount` values as far as [`outline`](super::outline()) needs them: which secret or
//! SSH socket a mount asks the caller for.
//!
//! Responsible for: picking the secrets and SSH sockets out of mounts read with
//! [`Mount::parse_with`] (BuildKit's syntax, defaults and errors: the secret id's fallback
//! to the target's file name, SSH's `default` id).
//! Not responsible for: deciding which variables are known (the caller's `expand` does),
//! or reporting invalid mounts (the typed layer does, or the engine after expansion).

use crate::expand::ExpandError;
use crate::instructions::mount::Mount;

/// What a `--mount` asks the caller for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum MountRequest {
    Secret { id: String, required: bool },
    Ssh { id: String, required: bool },
}

/// Reads a `--mount` value (`type=secret,id=npm,required`) as BuildKit does, each field's
/// value passed through `expand`; `None` for other mount types and invalid mounts.
pub(super) fn mount_request(
    value: &str,
    expand: &dyn Fn(&str) -> Result<String, ExpandError>,
) -> Option<MountRequest> {
    match Mount::parse_with(value, expand).ok()? {
        Mount::Secret { id, required, .. } => Some(MountRequest::Secret { id, required }),
        Mount::Ssh { id, required, .. } => Some(MountRequest::Ssh { id, required }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(value: &str) -> Option<MountRequest> {
        mount_request(value, &|v| Ok(v.to_owned()))
    }

    #[test]
    fn mount_values() {
        assert_eq!(
            literal("type=secret,id=npm,required"),
            Some(MountRequest::Secret {
                id: "npm".into(),
                required: true
            })
        );
        assert_eq!(
            literal("type=secret,target=/root/.aws/credentials,required=false"),
            Some(MountRequest::Secret {
                id: "credentials".into(),
                required: false
            })
        );
        assert_eq!(
            literal("type=ssh,id=github"),
            Some(MountRequest::Ssh {
                id: "github".into(),
                required: false
            })
        );
        assert_eq!(
            literal("type=ssh"),
            Some(MountRequest::Ssh {
                id: "default".into(),
                required: false
            })
        );
        assert_eq!(literal("type=cache,target=/root/.cache"), None);
        assert_eq!(literal("target=/src"), None);
        assert_eq!(literal("type=secret"), None);
        assert_eq!(
            literal(r#"type=secret,"id=a,b""#),
            Some(MountRequest::Secret {
                id: "a,b".into(),
                required: false
            })
        );
        let expand = |v: &str| Ok(v.replace("$ID", "token"));
        assert_eq!(
            mount_request("type=secret,id=$ID", &expand),
            Some(MountRequest::Secret {
                id: "token".into(),
                required: false
            })
        );
    }
}
