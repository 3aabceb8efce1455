//! Container start-to-exit time of `/bin/true` on a busybox rootfs: kiln's embedded sandbox next
//! to runc and crun, all started through `kiln::sandbox::start` with the same spec, for
//! `benches/sandbox-vs-runtimes.sh` (which builds this and runs it as root).
//!
//! ```text
//! sandbox_start --bench [--runs N] [--warmup N] [--backends kiln,crun,runc] [--spec CONFIG.json]
//!               [--rootfs DIR] [--order blocks|interleaved] [--settle-ms MS]
//! ```
//!
//! `--print-spec` writes the spec as JSON and exits (edit it and pass it back with `--spec`, e.g.
//! to leave out the network namespace).
//!
//! `--backends` takes `kiln` (the embedded sandbox), runtime names or paths, and `cgroup`: the
//! cost of `Cgroup::create` (memory, pids and cpu limits) plus `destroy` alone.
//!
//! Runs are interleaved (one run of each backend per round, the order rotating every round), so
//! that drifting machine load hits every backend alike. A run is `start` → `wait` with every
//! stream on `/dev/null`; for crun and runc it includes kiln's bundle handling (a temp dir with
//! `config.json`, removed after), which is timed on its own and printed as `bundle only`.
//!
//! `--order blocks` (the default, as hyperfine and `../shared/bench/bench-start.sh` run commands)
//! runs each backend's warm-up and runs back to back, one backend after the other;
//! `--order interleaved` rotates backends every round. On this machine (2 vCPUs of a VM)
//! interleaving does not measure a steady state: a run's asynchronous kernel work (network
//! namespace teardown in a workqueue, RCU callbacks) lands on the next run of another backend,
//! and an idle vCPU is slow to wake, so short runs pay for the long ones' leftovers — measured
//! here: kiln alone 3.0 ms median; interleaved with runc and crun 10-12 ms with a p10 of 3.2 ms;
//! with a 50 ms pause (`--settle-ms 50`, spinning) between runs even kiln alone takes 14 ms.
//! Without `--spec` the spec is the one kiln makes for a `RUN` step (`sandbox::spec::build` with
//! its defaults: Docker's namespaces, capabilities, seccomp profile, masked paths and device
//! rules) with `args = ["/bin/true"]`.
//!
//! Without `--bench` (`cargo test --benches`) it does nothing, so it never runs in CI.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kiln::sandbox::oci::OciRuntime;
use kiln::sandbox::spec::SandboxConfig;
use kiln::sandbox::{Backend, Spec, StdioConfig};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    let args: Vec<String> = args.into_iter().filter(|a| a != "--bench").collect();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "sandbox_start: {e}");
            ExitCode::from(2)
        }
    }
}

struct Options {
    runs: usize,
    warmup: usize,
    backends: Vec<String>,
    spec: Option<PathBuf>,
    rootfs: Option<PathBuf>,
    print_spec: bool,
    settle: Duration,
    interleaved: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        runs: 100,
        warmup: 3,
        backends: vec!["kiln".into(), "crun".into(), "runc".into()],
        spec: None,
        rootfs: None,
        print_spec: false,
        settle: Duration::ZERO,
        interleaved: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--runs" => o.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--warmup" => o.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--backends" => o.backends = value()?.split(',').map(String::from).collect(),
            "--spec" => o.spec = Some(value()?.into()),
            "--rootfs" => o.rootfs = Some(value()?.into()),
            "--print-spec" => o.print_spec = true,
            "--order" => {
                o.interleaved = match value()?.as_str() {
                    "blocks" => false,
                    "interleaved" => true,
                    other => return Err(format!("--order: `{other}` is not blocks|interleaved")),
                }
            }
            "--settle-ms" => {
                let ms: u64 = value()?.parse().map_err(|e| format!("--settle-ms: {e}"))?;
                o.settle = Duration::from_millis(ms);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if o.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    Ok(o)
}

/// What one series times.
enum Subject {
    /// `start` → `wait` through a backend.
    Container(Backend),
    /// `Cgroup::create` with memory, pids and cpu limits, then `destroy` (no process).
    Cgroup,
}

/// One backend's timings (or why it could not run).
struct Series {
    name: String,
    subject: Subject,
    times: Vec<Duration>,
    failure: Option<String>,
}

fn run(args: &[String]) -> Result<bool, String> {
    let o = parse(args)?;
    let made_rootfs;
    let rootfs = match &o.rootfs {
        Some(dir) => dir.clone(),
        None => {
            made_rootfs = busybox_rootfs()?;
            made_rootfs.path().to_path_buf()
        }
    };
    let spec = match &o.spec {
        Some(file) => Spec::load(file).map_err(|e| format!("{}: {e}", file.display()))?,
        None => true_spec(&rootfs)?,
    };
    let mut spec = spec;
    if let Some(root) = spec.root_mut().as_mut() {
        root.set_path(rootfs.clone());
    }
    if o.print_spec {
        let json = serde_json::to_string_pretty(&spec).map_err(|e| e.to_string())?;
        writeln!(std::io::stdout(), "{json}").map_err(|e| e.to_string())?;
        return Ok(true);
    }
    let mut series: Vec<Series> = o
        .backends
        .iter()
        .map(|name| Series {
            name: name.clone(),
            subject: match name.as_str() {
                "kiln" | "embedded" => Subject::Container(Backend::Embedded),
                "cgroup" => Subject::Cgroup,
                runtime => Subject::Container(Backend::Oci(OciRuntime::new(runtime))),
            },
            times: Vec::with_capacity(o.runs),
            failure: None,
        })
        .collect();

    let count = series.len();
    let rounds = o.warmup + o.runs;
    // (round, series index) in the order the runs happen.
    let schedule: Vec<(usize, usize)> = if o.interleaved {
        (0..rounds)
            .flat_map(|round| (0..count).map(move |k| (round, (round + k) % count)))
            .collect()
    } else {
        (0..count)
            .flat_map(|i| (0..rounds).map(move |round| (round, i)))
            .collect()
    };
    for (round, index) in schedule {
        {
            let s = &mut series[index];
            if s.failure.is_some() {
                continue;
            }
            settle(o.settle);
            let id = format!("kiln-bench-{}-{}-{round}", s.name, std::process::id());
            let timed = match &s.subject {
                Subject::Container(backend) => start_to_exit(backend, &id, &spec),
                Subject::Cgroup => cgroup_create_destroy(&id),
            };
            match timed {
                Ok(elapsed) if round >= o.warmup => s.times.push(elapsed),
                Ok(_) => {}
                Err(e) => s.failure = Some(e),
            }
        }
    }
    let bundle = bundle_only(&spec, o.runs)?;
    report(&o, &series, &bundle).map_err(|e| e.to_string())?;
    Ok(series.iter().all(|s| s.failure.is_none()))
}

/// Wait `d` spinning, not sleeping: an idle vCPU is descheduled by the hypervisor and every
/// backend's next run would pay for waking it (measured: sleeping 50 ms between runs made all
/// three backends 1.5x slower).
fn settle(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// `start` → `wait` of one container; a non-zero exit is a failure.
fn start_to_exit(backend: &Backend, id: &str, spec: &Spec) -> Result<Duration, String> {
    let started = Instant::now();
    let mut container = kiln::sandbox::start(backend, id, spec, StdioConfig::default())
        .map_err(|e| e.to_string())?;
    let status = container.wait().map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    if status.success() {
        Ok(elapsed)
    } else {
        Err(format!("/bin/true ended with {status}"))
    }
}

/// A container's cgroup with typical limits, created and destroyed.
fn cgroup_create_destroy(id: &str) -> Result<Duration, String> {
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };
    let limits = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(512 << 20)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .pids(
            LinuxPidsBuilder::default()
                .limit(1024)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(1024u64)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let cgroup = kiln::sandbox::cgroup::Cgroup::create(&format!("kiln-bench/{id}"), Some(&limits))
        .map_err(|e| e.to_string())?;
    cgroup.destroy().map_err(|e| e.to_string())?;
    Ok(started.elapsed())
}

/// What the OCI backend adds around `<runtime> run`: a temp dir, `config.json`, removal.
fn bundle_only(spec: &Spec, runs: usize) -> Result<Vec<Duration>, String> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("kiln-bench-bundle-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let json = serde_json::to_vec_pretty(spec).map_err(|e| e.to_string())?;
        fs_err::write(dir.path().join("config.json"), json).map_err(|e| e.to_string())?;
        dir.close().map_err(|e| e.to_string())?;
        times.push(started.elapsed());
    }
    Ok(times)
}

/// Median, 10th and 90th percentile and mean, in milliseconds.
fn stats(times: &[Duration]) -> Option<[f64; 4]> {
    if times.is_empty() {
        return None;
    }
    let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    Some([at(0.5), at(0.1), at(0.9), mean])
}

fn report(o: &Options, series: &[Series], bundle: &[Duration]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "start-to-exit of /bin/true, {} runs per backend (after {} warm-up runs), {}, {} ms pause between runs",
        o.runs,
        o.warmup,
        if o.interleaved {
            "interleaved"
        } else {
            "in blocks"
        },
        o.settle.as_millis()
    )?;
    writeln!(
        out,
        "{:<14} {:>5} {:>10} {:>10} {:>10} {:>10}",
        "backend", "runs", "median ms", "p10 ms", "p90 ms", "mean ms"
    )?;
    let mut medians = Vec::new();
    for s in series {
        match (&s.failure, stats(&s.times)) {
            (Some(why), _) => writeln!(out, "{:<14} failed: {why}", s.name)?,
            (None, Some([median, p10, p90, mean])) => {
                writeln!(
                    out,
                    "{:<14} {:>5} {median:>10.3} {p10:>10.3} {p90:>10.3} {mean:>10.3}",
                    s.name,
                    s.times.len()
                )?;
                medians.push((s.name.as_str(), median));
            }
            (None, None) => writeln!(out, "{:<14} no runs", s.name)?,
        }
    }
    if let Some([median, p10, p90, mean]) = stats(bundle) {
        writeln!(
            out,
            "{:<14} {:>5} {median:>10.3} {p10:>10.3} {p90:>10.3} {mean:>10.3}  (part of crun/runc rows)",
            "bundle only",
            bundle.len()
        )?;
    }
    let kiln = medians
        .iter()
        .find(|(n, _)| *n == "kiln" || *n == "embedded");
    for (runtime, target) in [("crun", 0.5), ("runc", 0.2)] {
        let other = medians.iter().find(|(n, _)| *n == runtime);
        if let (Some((_, k)), Some((_, r))) = (kiln, other) {
            let ratio = k / r;
            let verdict = if ratio <= target { "met" } else { "NOT met" };
            writeln!(
                out,
                "median kiln/{runtime} = {ratio:.3} (target <= {target}: {verdict})"
            )?;
        }
    }
    Ok(())
}

/// kiln's spec for a `RUN` step (Docker's defaults: namespaces, capabilities, seccomp profile,
/// masked paths, device rules) running `/bin/true`.
fn true_spec(rootfs: &Path) -> Result<Spec, String> {
    let cfg = SandboxConfig {
        rootfs: rootfs.to_path_buf(),
        args: vec!["/bin/true".into()],
        env: vec!["PATH=/bin".into()],
        ..SandboxConfig::default()
    };
    kiln::sandbox::spec::build(&cfg).map_err(|e| e.to_string())
}

/// Debian's static busybox with its applets as symlinks, in a temp dir.
fn busybox_rootfs() -> Result<tempfile::TempDir, String> {
    let busybox = Path::new("/bin/busybox");
    let list = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| {
            format!(
                "{}: {e} (apt-get install busybox-static)",
                busybox.display()
            )
        })?;
    let root = tempfile::Builder::new()
        .prefix("kiln-bench-rootfs-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| e.to_string();
    for dir in ["bin", "etc", "proc", "dev", "sys", "tmp"] {
        fs_err::create_dir(root.path().join(dir)).map_err(io)?;
    }
    fs_err::copy(busybox, root.path().join("bin/busybox")).map_err(io)?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.path().join("bin").join(applet))
                .map_err(io)?;
        }
    }
    fs_err::write(
        root.path().join("etc/passwd"),
        "root:x:0:0:root:/:/bin/sh\n",
    )
    .map_err(io)?;
    Ok(root)
}
