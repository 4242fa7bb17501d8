//! The kinds of JWT Mandate reads and writes, their `typ` values, and the signing algorithm names.

use serde::{Deserialize, Serialize};

/// What a JWT is for. Each kind has exactly one validation profile (SECURITY.md, line 2), and a
/// token of one kind never verifies as another: the `typ` header is checked against the kind
/// the caller expects, case-insensitively and with an optional `application/` prefix
/// (RFC 7515 §4.1.9), and nothing else is tolerated.
///
/// [`JwtKind::ClientAssertion`] and [`JwtKind::ActorToken`] accept the same `typ` values, so the
/// header cannot tell them apart; they arrive in different request parameters and the server
/// must tell them apart by their claims and audience. A client assertion authenticates its
/// sender (`iss` = `sub` = the sender's client id, `aud` = our issuer); an actor token names
/// a *different* party (the sub-agent) and is handed to the caller by that party. The server
/// must therefore consume both kinds' `jti` through one replay store, and must not accept as a
/// client assertion a JWT whose claims mark it as an actor token (or the parent agent, which
/// holds its sub-agent's actor token, could authenticate as the sub-agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtKind {
    /// An OAuth access token: `typ` `at+jwt` (RFC 9068 §2.1).
    AccessToken,
    /// A DPoP proof: `typ` `dpop+jwt` (RFC 9449 §4.2).
    DpopProof,
    /// A `private_key_jwt` client assertion (RFC 7523 §3): `typ` absent, `JWT`, or
    /// `client-authentication+jwt` (draft-ietf-oauth-rfc7523bis).
    ClientAssertion,
    /// An RFC 8693 actor token signed by a sub-agent: the same `typ` values as
    /// [`JwtKind::ClientAssertion`].
    ActorToken,
    /// A signed delegation document: `typ` `delegation+jwt` (our own media type).
    Delegation,
    /// A Token Status List: `typ` `statuslist+jwt` (draft-ietf-oauth-status-list).
    StatusList,
}

/// Every kind, for tables and tests.
pub const ALL_KINDS: [JwtKind; 6] = [
    JwtKind::AccessToken,
    JwtKind::DpopProof,
    JwtKind::ClientAssertion,
    JwtKind::ActorToken,
    JwtKind::Delegation,
    JwtKind::StatusList,
];

impl JwtKind {
    /// The `typ` header written when signing a token of this kind.
    ///
    /// A client assertion is explicitly typed (draft-ietf-oauth-rfc7523bis); an actor token
    /// uses plain `JWT` so that it never carries the client-authentication type.
    pub fn typ(self) -> &'static str {
        match self {
            Self::AccessToken => "at+jwt",
            Self::DpopProof => "dpop+jwt",
            Self::ClientAssertion => "client-authentication+jwt",
            Self::ActorToken => "JWT",
            Self::Delegation => "delegation+jwt",
            Self::StatusList => "statuslist+jwt",
        }
    }

    /// Whether a `typ` header (`None` when absent) marks a token of this kind.
    pub fn accepts_typ(self, typ: Option<&str>) -> bool {
        match (self, typ) {
            (Self::ClientAssertion | Self::ActorToken, None) => true,
            (Self::ClientAssertion | Self::ActorToken, Some(t)) => {
                media_type_eq(t, "jwt") || media_type_eq(t, "client-authentication+jwt")
            }
            (_, None) => false,
            (kind, Some(t)) => media_type_eq(t, kind.typ()),
        }
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::AccessToken => "an access token",
            Self::DpopProof => "a DPoP proof",
            Self::ClientAssertion => "a client assertion",
            Self::ActorToken => "an actor token",
            Self::Delegation => "a delegation document",
            Self::StatusList => "a status list",
        }
    }

    /// The accepted `typ` values, for messages.
    pub fn accepted_types(self) -> &'static str {
        match self {
            Self::AccessToken => "`at+jwt`",
            Self::DpopProof => "`dpop+jwt`",
            Self::ClientAssertion | Self::ActorToken => {
                "none, `JWT` or `client-authentication+jwt`"
            }
            Self::Delegation => "`delegation+jwt`",
            Self::StatusList => "`statuslist+jwt`",
        }
    }
}

/// The JOSE name Mandate signs Ed25519 signatures under (DESIGN §4, "Algorithm names").
///
/// On input both names are accepted and nothing else: the algorithm is pinned by the key
/// (Ed25519), never chosen by the header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// The polymorphic name, deprecated by RFC 9864 but what most verifiers know (default).
    #[default]
    EdDSA,
    /// The fully-specified name defined by RFC 9864.
    Ed25519,
}

impl Algorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::Ed25519 => "Ed25519",
        }
    }

    /// Reads an `alg` header value. `alg` values are case-sensitive (RFC 7515 §4.1.1), so only
    /// the exact names are recognised.
    pub fn from_header(alg: &str) -> Option<Self> {
        match alg {
            "EdDSA" => Some(Self::EdDSA),
            "Ed25519" => Some(Self::Ed25519),
            _ => None,
        }
    }
}

/// RFC 7515 §4.1.9: "A recipient using the media type value MUST treat it as if
/// "application/" were prepended to any "typ" value not containing a '/'." Media type names
/// are case-insensitive (RFC 6838 §4.2), so `APPLICATION/AT+JWT` is `at+jwt`; parameters or any
/// other decoration are not tolerated.
fn media_type_eq(found: &str, want: &str) -> bool {
    const PREFIX: &str = "application/";
    let bare = match (found.get(..PREFIX.len()), found.get(PREFIX.len()..)) {
        (Some(head), Some(rest)) if head.eq_ignore_ascii_case(PREFIX) => rest,
        _ => found,
    };
    bare.eq_ignore_ascii_case(want)
}
