//! Docker's default seccomp profile, and compiling a spec's profile to BPF (seccompiler).
