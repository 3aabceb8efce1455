//! `USER` resolved from the rootfs's `/etc/passwd` and `/etc/group`.
