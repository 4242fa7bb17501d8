//! Integration tests of the gate against a real authority, a counting upstream and real
//! clients.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub,
    reason = "tests"
)]

mod harness;
mod http;
mod mcp;
mod spool;
