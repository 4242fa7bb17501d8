//! Store errors, phrased for the caller (never SQL or paths).

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object does not exist in this tenant.
    #[error("{0} not found")]
    NotFound(String),
    /// The change conflicts with existing state (duplicate, invalid transition).
    #[error("{0}")]
    Conflict(String),
    /// Storage or the ledger cannot durably record right now; nothing changed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data is not what this version expects (a bug or a foreign write).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}
