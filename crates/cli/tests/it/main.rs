//! Process-level tests of the `mandate` binary: crash safety and the CLI over a real server,
//! plus exit codes, error lines and key handling against a scripted HTTP server.
#![allow(unreachable_pub, reason = "test-binary helpers")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod approval_cli;
mod chain_demo;
mod cli;
mod commands;
mod crash;
mod delegation_cli;
mod demo;
mod mcp_gate;
mod proc;
mod replicas;
mod secrets_scan;
mod support;
mod tamper;
