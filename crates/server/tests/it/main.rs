//! Integration tests: the real server on `127.0.0.1:0`, driven over HTTP.
#![allow(unreachable_pub, reason = "test-binary helpers")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod admin;
mod bad_input;
mod delegation;
mod events;
mod harness;
mod interop;
mod isolation;
mod mandates;
mod model;
mod proofs;
mod public;
mod revocation;
mod status;
mod tokens;
