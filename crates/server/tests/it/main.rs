//! Integration tests: the real server on `127.0.0.1:0`, driven over HTTP.
#![allow(unreachable_pub, reason = "test-binary helpers")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod admin;
mod approvals;
mod bad_input;
mod delegation;
mod events;
mod gate_receipts;
mod harness;
mod interop;
mod isolation;
mod mandates;
mod model;
mod proofs;
mod public;
mod replicas;
mod revocation;
mod status;
mod tokens;
