//! BuildKit's predefined build arguments.
//!
//! - Platform args (`TARGETPLATFORM`, `BUILDARCH`, ...) are set by the builder, usable in `FROM`
//!   lines without a declaration, and inside a stage once declared with `ARG NAME` (no default
//!   needed). The engine computes their values ([`platform_args`]) and passes them in
//!   `PlanOptions::automatic_args`.
//! - Proxy args (`HTTP_PROXY`, ...) are usable by `RUN` without a declaration when given with
//!   `--build-arg`, and are kept out of the image's history ([`is_proxy_arg`]).
//!
//! Not responsible for: knowing the host's platform (the engine passes it in).

use std::collections::BTreeMap;

/// The automatic platform args, in BuildKit's order.
pub const PLATFORM_ARGS: [&str; 8] = [
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// The proxy args BuildKit predefines (both spellings).
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether `name` is a predefined proxy arg.
pub fn is_proxy_arg(name: &str) -> bool {
    PROXY_ARGS.contains(&name)
}

/// Whether `name` is an automatic platform arg.
pub fn is_platform_arg(name: &str) -> bool {
    PLATFORM_ARGS.contains(&name)
}

/// A platform as `os`, `architecture` and optional `variant` (OCI names: `linux`, `arm64`, `v8`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformSpec {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// `os/arch[/variant]`, as in `--platform`.
    pub fn to_slash_form(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// The values of the platform args for a build on `build` targeting `target`.
pub fn platform_args(build: &PlatformSpec, target: &PlatformSpec) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        out.insert(format!("{prefix}PLATFORM"), p.to_slash_form());
        out.insert(format!("{prefix}OS"), p.os.clone());
        out.insert(format!("{prefix}ARCH"), p.architecture.clone());
        out.insert(
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_args_have_every_name() {
        let amd = PlatformSpec {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let arm = PlatformSpec {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        let args = platform_args(&amd, &arm);
        assert_eq!(args.len(), PLATFORM_ARGS.len());
        assert!(PLATFORM_ARGS.iter().all(|n| args.contains_key(*n)));
        assert_eq!(args["TARGETPLATFORM"], "linux/arm64/v8");
        assert_eq!(args["TARGETVARIANT"], "v8");
        assert_eq!(args["BUILDPLATFORM"], "linux/amd64");
        assert_eq!(args["BUILDVARIANT"], "");
        assert!(is_proxy_arg("no_proxy") && !is_proxy_arg("PROXY"));
    }
}
