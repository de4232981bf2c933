//! The `podcert-signer` command line (interim library target: the demo still calls `run`).

#![forbid(unsafe_code)]

pub mod cli;
