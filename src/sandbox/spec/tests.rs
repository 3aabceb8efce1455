//! Tests of the built spec: its shape, Docker's defaults, and validity against the OCI runtime
//! spec's JSON schema (`shared/conformance/oci-runtime-spec/schema`).

use std::collections::BTreeSet;
use std::error::Error;

use jsonschema::{Retrieve, Uri};
use oci_spec::runtime::{LinuxSeccompAction, PosixRlimitType};
use serde_json::Value;

use super::*;

fn cfg() -> SandboxConfig {
    SandboxConfig {
        rootfs: PathBuf::from("/var/lib/kiln/mnt/step"),
        args: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
        ..Default::default()
    }
}

fn json(spec: &Spec) -> Value {
    serde_json::to_value(spec).unwrap()
}

fn caps_of(v: &Value, set: &str) -> BTreeSet<String> {
    v["process"]["capabilities"][set]
        .as_array()
        .unwrap_or_else(|| panic!("capabilities.{set} missing: {v}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

const DOCKER_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

#[test]
fn capability_mask_is_dockers() {
    assert_eq!(default_capability_mask(), 0x0000_0000_a804_25fb);
    assert_eq!(DEFAULT_CAPABILITIES.len(), 14);
    assert_eq!(capability_mask(&[Capability::CheckpointRestore]), 1 << 40);
    assert_eq!(capability_mask(&[Capability::SysAdmin]), 1 << 21);
}

#[test]
fn root_process_gets_dockers_capabilities() {
    let v = json(&build(&cfg()).unwrap());
    let docker: BTreeSet<String> = DOCKER_CAPS.iter().map(|c| (*c).to_owned()).collect();
    for set in ["bounding", "effective", "permitted"] {
        assert_eq!(caps_of(&v, set), docker, "{set}");
    }
    assert!(caps_of(&v, "inheritable").is_empty());
    assert!(caps_of(&v, "ambient").is_empty());
    let p = &v["process"];
    assert_eq!(p["user"]["uid"], 0);
    assert_eq!(p["user"]["gid"], 0);
    assert!(p["user"].get("additionalGids").is_none());
    assert_eq!(p["args"][2], "echo hi");
    assert_eq!(p["env"], serde_json::json!([DEFAULT_PATH_ENV]));
    assert_eq!(p["cwd"], "/");
    assert_eq!(
        p["noNewPrivileges"], false,
        "BuildKit's RUN: oci.WithNewPrivileges"
    );
    assert_eq!(p["terminal"], false);
    assert!(
        p.get("rlimits").is_none(),
        "inherit, as BuildKit without --ulimit"
    );
    assert!(p.get("apparmorProfile").is_none());
    assert_eq!(v["hostname"], DEFAULT_HOSTNAME);
    assert_eq!(v["root"]["path"], "/var/lib/kiln/mnt/step");
    assert_eq!(v["root"]["readonly"], false);
}

#[test]
fn non_root_process_gets_only_the_bounding_set() {
    let mut c = cfg();
    c.user = User {
        uid: 1000,
        gid: 1000,
        additional_gids: vec![5, 50],
        home: "/home/app".into(),
    };
    let v = json(&build(&c).unwrap());
    assert_eq!(caps_of(&v, "bounding").len(), 14);
    for set in ["effective", "permitted", "inheritable", "ambient"] {
        assert!(caps_of(&v, set).is_empty(), "{set}");
    }
    assert_eq!(v["process"]["user"]["uid"], 1000);
    assert_eq!(
        v["process"]["user"]["additionalGids"],
        serde_json::json!([5, 50])
    );
}

#[test]
fn namespaces_follow_network_and_cgroup_choices() {
    let types = |c: &SandboxConfig| -> Vec<(String, Option<String>)> {
        json(&build(c).unwrap())["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["type"].as_str().unwrap().to_owned(),
                    n.get("path").map(|p| p.as_str().unwrap().to_owned()),
                )
            })
            .collect()
    };
    let names = |c: &SandboxConfig| types(c).into_iter().map(|(t, _)| t).collect::<Vec<_>>();
    let mut c = cfg();
    c.cgroup_namespace = CgroupNamespace::Private;
    assert_eq!(
        names(&c),
        ["pid", "ipc", "uts", "mount", "network", "cgroup"]
    );
    c.cgroup_namespace = CgroupNamespace::Host;
    assert_eq!(names(&c), ["pid", "ipc", "uts", "mount", "network"]);
    c.network = Network::Host;
    assert_eq!(names(&c), ["pid", "ipc", "uts", "mount"]);
    c.network = Network::Join("/var/run/netns/kiln0".into());
    assert_eq!(
        types(&c).last().unwrap(),
        &(
            "network".to_owned(),
            Some("/var/run/netns/kiln0".to_owned())
        )
    );
    c.cgroup_namespace = CgroupNamespace::Auto;
    let has_cgroup = names(&c).iter().any(|n| n == "cgroup");
    assert_eq!(has_cgroup, cgroup_v2_namespace_supported());
}

#[test]
fn mounts_are_buildkits_defaults_then_etc_files_then_the_callers() {
    let mut c = cfg();
    c.etc_files = vec![
        EtcFile {
            destination: "/etc/resolv.conf".into(),
            source: "/tmp/step/resolv.conf".into(),
        },
        EtcFile {
            destination: "/etc/hosts".into(),
            source: "/tmp/step/hosts".into(),
        },
    ];
    let mut extra = Mount::default();
    extra.set_destination("/src".into());
    extra.set_typ(Some("bind".into()));
    extra.set_source(Some("/work/ctx".into()));
    extra.set_options(Some(vec!["rbind".into(), "ro".into()]));
    c.mounts = vec![extra];
    let v = json(&build(&c).unwrap());
    let mounts: Vec<(String, String, String, Vec<String>)> = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["destination"].as_str().unwrap().to_owned(),
                m["type"].as_str().unwrap().to_owned(),
                m["source"].as_str().unwrap().to_owned(),
                m["options"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();
    let expect: &[(&str, &str, &str, &[&str])] = &[
        ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        (
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        (
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        (
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        (
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        (
            "/etc/resolv.conf",
            "bind",
            "/tmp/step/resolv.conf",
            &["nosuid", "noexec", "nodev", "rbind", "ro"],
        ),
        (
            "/etc/hosts",
            "bind",
            "/tmp/step/hosts",
            &["nosuid", "noexec", "nodev", "rbind", "ro"],
        ),
        (
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        ),
        ("/src", "bind", "/work/ctx", &["rbind", "ro"]),
    ];
    let expect: Vec<(String, String, String, Vec<String>)> = expect
        .iter()
        .map(|(d, t, s, o)| {
            (
                (*d).to_owned(),
                (*t).to_owned(),
                (*s).to_owned(),
                o.iter().map(|x| (*x).to_owned()).collect(),
            )
        })
        .collect();
    assert_eq!(mounts, expect);
    assert!(
        !mounts.iter().any(|m| m.0 == "/run"),
        "BuildKit removes containerd's /run"
    );
}

#[test]
fn masked_readonly_paths_and_devices_are_dockers() {
    let v = json(&build(&cfg()).unwrap());
    let linux = &v["linux"];
    let masked: Vec<&str> = linux["maskedPaths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(&masked[..MASKED_PATHS.len()], MASKED_PATHS);
    for extra in &masked[MASKED_PATHS.len()..] {
        assert!(
            extra.starts_with("/sys/devices/system/cpu/cpu")
                && extra.ends_with("/thermal_throttle"),
            "{extra}"
        );
    }
    assert_eq!(
        linux["readonlyPaths"],
        serde_json::json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ])
    );
    assert_eq!(linux["devices"], serde_json::json!([]));
    let rules = linux["resources"]["devices"].as_array().unwrap();
    assert_eq!(rules.len(), 8);
    assert_eq!(
        rules[0],
        serde_json::json!({"allow": false, "access": "rwm"})
    );
    assert_eq!(
        rules[7],
        serde_json::json!({"allow": false, "type": "c", "major": 10, "minor": 229, "access": "rwm"})
    );
    assert!(linux.get("cgroupsPath").is_none());
}

#[test]
fn seccomp_is_dockers_default_for_the_capability_set() {
    let spec = build(&cfg()).unwrap();
    let sc = spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
    assert_eq!(sc.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(sc.default_errno_ret(), Some(1));
    let has = |sc: &oci_spec::runtime::LinuxSeccomp, name: &str| {
        sc.syscalls().as_ref().unwrap().iter().any(|r| {
            r.names().iter().any(|n| n == name) && r.action() == LinuxSeccompAction::ScmpActAllow
        })
    };
    assert!(has(sc, "chroot"));
    assert!(!has(sc, "mount"));

    let mut c = cfg();
    c.capabilities.push(Capability::SysAdmin);
    c.capabilities.retain(|cap| *cap != Capability::SysChroot);
    let spec = build(&c).unwrap();
    let sc = spec.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
    assert!(has(sc, "mount"));
    assert!(!has(sc, "chroot"));

    c.seccomp = SeccompPolicy::Unconfined;
    assert!(
        build(&c)
            .unwrap()
            .linux()
            .as_ref()
            .unwrap()
            .seccomp()
            .is_none()
    );
}

#[test]
fn options_reach_the_spec() {
    let mut c = cfg();
    c.readonly_rootfs = true;
    c.no_new_privileges = true;
    c.terminal = true;
    c.cgroups_path = Some("/kiln/step-1".into());
    let nofile = oci_spec::runtime::PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(1024u64)
        .hard(2048u64)
        .build()
        .unwrap();
    c.rlimits = vec![nofile];
    let mut res = LinuxResources::default();
    let mut pids = oci_spec::runtime::LinuxPids::default();
    pids.set_limit(100);
    res.set_pids(Some(pids));
    c.resources = Some(res);
    let v = json(&build(&c).unwrap());
    assert_eq!(v["root"]["readonly"], true);
    assert_eq!(v["process"]["noNewPrivileges"], true);
    assert_eq!(v["process"]["terminal"], true);
    assert_eq!(
        v["process"]["rlimits"],
        serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024}])
    );
    assert_eq!(v["linux"]["cgroupsPath"], "/kiln/step-1");
    assert_eq!(v["linux"]["resources"]["pids"]["limit"], 100);
    assert_eq!(
        v["linux"]["resources"]["devices"].as_array().unwrap().len(),
        8
    );
}

#[test]
fn invalid_configs_are_refused() {
    let refused = |f: &dyn Fn(&mut SandboxConfig)| {
        let mut c = cfg();
        f(&mut c);
        assert!(matches!(build(&c), Err(SandboxError::Spec(_))));
    };
    refused(&|c| c.args.clear());
    refused(&|c| c.rootfs = "relative/rootfs".into());
    refused(&|c| c.cwd = "work".into());
    refused(&|c| c.env.push("NOVALUE".into()));
    refused(&|c| c.env.push("=x".into()));
    refused(&|c| {
        c.etc_files.push(EtcFile {
            destination: "etc/hosts".into(),
            source: "/tmp/hosts".into(),
        });
    });
    refused(&|c| {
        c.user_namespace = UserNamespace::Private {
            uid_mappings: Vec::new(),
            gid_mappings: vec![IdMapping {
                container_id: 0,
                host_id: 1000,
                size: 1,
            }],
        };
    });
}

#[test]
fn no_user_namespace_unless_asked() {
    let v = json(&build(&cfg()).unwrap());
    let types: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(!types.contains(&"user"), "{types:?}");
    assert!(v["linux"].get("uidMappings").is_none_or(Value::is_null));
}

#[test]
fn a_user_namespace_carries_its_maps() {
    let mut c = cfg();
    c.user_namespace = UserNamespace::shifted(100_000, 65_536);
    let v = json(&build(&c).unwrap());
    let user: Vec<&Value> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] == "user")
        .collect();
    assert_eq!(user.len(), 1);
    assert!(user[0].get("path").is_none_or(Value::is_null));
    let range = serde_json::json!([{"containerID": 0, "hostID": 100_000, "size": 65_536}]);
    assert_eq!(v["linux"]["uidMappings"], range);
    assert_eq!(v["linux"]["gidMappings"], range);

    let UserNamespace::Private {
        uid_mappings,
        gid_mappings,
    } = UserNamespace::map_root_to_caller()
    else {
        panic!("map_root_to_caller is not private");
    };
    let euid = rustix::process::geteuid().as_raw();
    let egid = rustix::process::getegid().as_raw();
    assert_eq!(
        (uid_mappings.as_slice(), gid_mappings.as_slice()),
        (
            &[IdMapping {
                container_id: 0,
                host_id: euid,
                size: 1
            }][..],
            &[IdMapping {
                container_id: 0,
                host_id: egid,
                size: 1
            }][..]
        )
    );
}

#[test]
fn spec_round_trips_through_json() {
    let spec = build(&cfg()).unwrap();
    let text = serde_json::to_string_pretty(&spec).unwrap();
    let back: Spec = serde_json::from_str(&text).unwrap();
    assert_eq!(back, spec);
}

// ---- validation against the OCI runtime-spec schema ----

const SCHEMA_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/conformance/oci-runtime-spec/schema"
);

/// Resolves `$ref`s (`defs.json`, `config-linux.json`, ...) to files of the schema directory.
struct SchemaDir;

impl Retrieve for SchemaDir {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> std::result::Result<Value, Box<dyn Error + Send + Sync>> {
        let name = uri
            .path()
            .as_str()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        if !name.ends_with(".json") || name.contains(['\\', '%']) || name.starts_with('.') {
            return Err(format!("no local schema for {}", uri.as_str()).into());
        }
        let text = fs_err::read_to_string(Path::new(SCHEMA_DIR).join(&name))?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn validator() -> Option<jsonschema::Validator> {
    let path = Path::new(SCHEMA_DIR).join("config-schema.json");
    if !path.is_file() {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("SKIP spec schema validation: {} is missing", path.display());
        }
        return None;
    }
    let schema: Value = serde_json::from_str(&fs_err::read_to_string(&path).unwrap()).unwrap();
    Some(
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .with_retriever(SchemaDir)
            .build(&schema)
            .unwrap(),
    )
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn built_specs_validate_against_the_runtime_spec_schema() {
    let Some(v) = validator() else { return };
    // The validator is set up right: upstream's fixtures validate or fail as they should.
    let fixtures = Path::new(SCHEMA_DIR).join("test/config");
    for (dir, good) in [("good", true), ("bad", false)] {
        for entry in fs_err::read_dir(fixtures.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = fs_err::read_to_string(&path).unwrap();
            let valid = serde_json::from_str::<Value>(&text).is_ok_and(|doc| v.is_valid(&doc));
            assert_eq!(valid, good, "{}", path.display());
        }
    }

    let mut root_cfg = cfg();
    root_cfg.cgroup_namespace = CgroupNamespace::Private;
    let mut user_cfg = cfg();
    user_cfg.user = User {
        uid: 33,
        gid: 33,
        additional_gids: vec![4],
        home: "/var/www".into(),
    };
    user_cfg.network = Network::Host;
    user_cfg.readonly_rootfs = true;
    user_cfg.cgroups_path = Some("/kiln/x".into());
    user_cfg.etc_files.push(EtcFile {
        destination: "/etc/hosts".into(),
        source: "/tmp/hosts".into(),
    });
    let mut rootless_cfg = cfg();
    rootless_cfg.user_namespace = UserNamespace::shifted(100_000, 65_536);
    for c in [root_cfg, user_cfg, rootless_cfg] {
        let doc = json(&build(&c).unwrap());
        let errs = errors(&v, &doc);
        assert!(errs.is_empty(), "{errs:#?}\n{doc:#}");
    }
    // And a broken one is caught (so the check above is not vacuous).
    let mut doc = json(&build(&cfg()).unwrap());
    doc["process"]["capabilities"]["bounding"] = serde_json::json!(["NOT_A_CAP", 3]);
    assert!(!errors(&v, &doc).is_empty());
}

// ---- the same spec, run by runc and crun ----

/// A rootfs holding only a static busybox (Debian's `busybox-static`).
fn busybox_rootfs(dir: &Path) -> Option<PathBuf> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())?;
    // Only a static build runs in an empty rootfs.
    let out = std::process::Command::new("file")
        .arg("-L")
        .arg(busybox)
        .output()
        .ok();
    if let Some(out) = out
        && !String::from_utf8_lossy(&out.stdout).contains("statically linked")
    {
        return None;
    }
    let rootfs = dir.join("rootfs");
    fs_err::create_dir_all(rootfs.join("bin")).unwrap();
    fs_err::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    Some(rootfs)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

#[allow(clippy::print_stderr)]
fn skip(why: &str) {
    eprintln!("SKIP runc/crun cross-check: {why}");
}

/// runc and crun accept the built `config.json` and give the process Docker's identity:
/// capabilities, seccomp mode, hostname, namespaces.
#[test]
fn oci_runtimes_run_the_built_spec() {
    if !rustix::process::geteuid().is_root() {
        return skip("needs root");
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(rootfs) = busybox_rootfs(dir.path()) else {
        return skip("no static busybox (apt-get install busybox-static)");
    };
    let runtimes: Vec<PathBuf> = ["runc", "crun"].into_iter().filter_map(which).collect();
    if runtimes.is_empty() {
        return skip("neither runc nor crun is installed");
    }
    let script = "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' \
                  /proc/self/status; /bin/busybox hostname; /bin/busybox id -u; \
                  /bin/busybox unshare -U true 2>/dev/null && echo unshare-ok || echo unshare-denied";
    for (uid, cap_eff) in [(0u32, "00000000a80425fb"), (1000, "0000000000000000")] {
        let mut c = cfg();
        c.rootfs = rootfs.clone();
        c.args = vec![
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            script.into(),
        ];
        c.env = vec!["PATH=/bin".into()];
        c.user.uid = uid;
        c.user.gid = uid;
        c.cgroup_namespace = CgroupNamespace::Host;
        let spec = build(&c).unwrap();
        let bundle = dir.path().join(format!("bundle-{uid}"));
        fs_err::create_dir_all(&bundle).unwrap();
        fs_err::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        for runtime in &runtimes {
            let state = dir.path().join(format!("state-{uid}"));
            let id = format!("kiln-spec-test-{}-{uid}", std::process::id());
            let out = std::process::Command::new(runtime)
                .arg("--root")
                .arg(&state)
                .args(["run", "--bundle"])
                .arg(&bundle)
                .arg(&id)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let who = format!("{} as uid {uid}", runtime.display());
            if stderr.contains("cgroups in hybrid mode not supported") {
                // crun (1.8) runs nothing on a cgroup v1 host whose v2 hierarchy is mounted
                // too, whatever the spec says; `crun spec`'s own example fails the same way.
                skip(&format!("{who}: {}", stderr.trim()));
                continue;
            }
            assert!(
                out.status.success(),
                "{who}: {}\nstdout: {stdout}\nstderr: {stderr}",
                out.status
            );
            let field = |name: &str| {
                stdout
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
                    .unwrap_or_else(|| panic!("{who}: no {name} in {stdout}"))
                    .to_owned()
            };
            assert_eq!(field("CapBnd:"), "00000000a80425fb", "{who}");
            assert_eq!(field("CapEff:"), cap_eff, "{who}");
            assert_eq!(field("CapPrm:"), cap_eff, "{who}");
            assert_eq!(field("CapInh:"), "0000000000000000", "{who}");
            assert_eq!(field("CapAmb:"), "0000000000000000", "{who}");
            assert_eq!(field("NoNewPrivs:"), "0", "{who}");
            assert_eq!(field("Seccomp:"), "2", "{who}: seccomp filter mode");
            assert!(
                stdout.lines().any(|l| l == DEFAULT_HOSTNAME),
                "{who}: {stdout}"
            );
            assert!(
                stdout.lines().any(|l| l == uid.to_string()),
                "{who}: {stdout}"
            );
            assert!(
                stdout.lines().any(|l| l == "unshare-denied"),
                "{who}: {stdout}"
            );
        }
    }
}
