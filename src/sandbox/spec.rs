//! Docker's (and BuildKit's) defaults as an OCI runtime spec.
