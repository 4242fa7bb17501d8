//! Pure domain core of Mandate.
//!
//! This crate holds the vocabulary of the system and the rules that never depend on the
//! outside world: identifiers, the scope model and its attenuation algebra (DESIGN §3),
//! RFC 8785 canonical JSON, Ed25519 public keys as JWKs, agent commitments and the ledger's
//! receipt hashing and chain verification (DESIGN §6).
//!
//! It must not do IO, read a clock or draw randomness: times come in as unix milliseconds,
//! random bytes come in as arguments. CI checks its dependency tree for async runtimes,
//! database drivers and HTTP crates.
//!
//! ```
//! use mandate_core::id::{AgentId, IdKind};
//! let id = AgentId::from_parts(1_763_900_000_000, [7u8; 10]);
//! assert!(id.as_str().starts_with("agt_"));
//! assert_eq!(id.as_str().len(), 4 + 26);
//! assert_eq!(AgentId::parse(id.as_str()).unwrap(), id);
//! # let _ = IdKind::Agent;
//! ```
#![warn(missing_docs)]

pub mod checkpoint;
pub mod clock;
pub mod encoding;
pub mod id;
pub mod identity;
pub mod jcs;
pub mod jose;
pub mod json;
pub mod jwk;
pub mod merkle;
pub mod receipt;
pub mod scope;
pub mod status_list;
