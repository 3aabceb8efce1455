//! cgroups v1 and v2: a container's cgroup with its memory, pids and cpu limits.
