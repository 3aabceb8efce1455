//! Capability sets of a spec as bitmasks (bit N = capability number N, see capabilities(7)).
//!
//! Not responsible for: applying them (the container process does, in `process`), choosing
//! them or numbering them (`sandbox::spec`).

use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use super::super::spec::capability_number;

/// The five capability sets of a process, as bitmasks limited to the capabilities this kernel
/// knows (`0..=last_cap`; runc likewise ignores capabilities the kernel does not have).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
    /// The highest capability number of the running kernel.
    pub last_cap: u32,
}

impl CapSets {
    /// `caps` (no capabilities at all when `None`) on a kernel whose highest capability is
    /// `last_cap`.
    pub(super) fn new(caps: Option<&LinuxCapabilities>, last_cap: u32) -> Self {
        let known = if last_cap >= 63 {
            u64::MAX
        } else {
            (1u64 << (last_cap + 1)) - 1
        };
        let mask = |set: Option<&Capabilities>| {
            set.map_or(0, |set| {
                set.iter()
                    .fold(0u64, |m, c| m | (1u64 << capability_number(*c)))
            }) & known
        };
        match caps {
            None => CapSets {
                last_cap,
                ..CapSets::default()
            },
            Some(c) => CapSets {
                bounding: mask(c.bounding().as_ref()),
                effective: mask(c.effective().as_ref()),
                permitted: mask(c.permitted().as_ref()),
                inheritable: mask(c.inheritable().as_ref()),
                ambient: mask(c.ambient().as_ref()),
                last_cap,
            },
        }
    }
}

/// The running kernel's highest capability number (`/proc/sys/kernel/cap_last_cap`), or the
/// highest one this code knows when that file cannot be read.
pub(super) fn kernel_last_cap() -> u32 {
    fs_err::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Capability, LinuxCapabilitiesBuilder};

    /// Docker's default capability set (moby `oci/caps/defaults.go`).
    fn docker_default() -> Capabilities {
        use Capability as C;
        [
            C::Chown,
            C::DacOverride,
            C::Fsetid,
            C::Fowner,
            C::Mknod,
            C::NetRaw,
            C::Setgid,
            C::Setuid,
            C::Setfcap,
            C::Setpcap,
            C::NetBindService,
            C::SysChroot,
            C::Kill,
            C::AuditWrite,
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn docker_default_set_is_the_known_mask() {
        let caps = LinuxCapabilitiesBuilder::default()
            .bounding(docker_default())
            .effective(docker_default())
            .permitted(docker_default())
            .inheritable(Capabilities::new())
            .ambient(Capabilities::new())
            .build()
            .unwrap();
        let sets = CapSets::new(Some(&caps), 40);
        // What `grep CapEff /proc/self/status` shows in a Docker container run as root.
        assert_eq!(sets.bounding, 0x0000_0000_a804_25fb);
        assert_eq!(sets.effective, 0x0000_0000_a804_25fb);
        assert_eq!(sets.inheritable, 0);
        assert_eq!(sets.ambient, 0);
    }

    #[test]
    fn capabilities_the_kernel_lacks_are_dropped() {
        let caps = LinuxCapabilitiesBuilder::default()
            .bounding(
                [Capability::CheckpointRestore, Capability::Chown]
                    .into_iter()
                    .collect::<Capabilities>(),
            )
            .build()
            .unwrap();
        let sets = CapSets::new(Some(&caps), 38);
        assert_eq!(sets.bounding, 1);
        assert_eq!(CapSets::new(None, 40).bounding, 0);
    }
}
