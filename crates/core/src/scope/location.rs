//! Locations: resource-server identifiers (absolute `https`/`http` URIs) that become `aud`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::{ScopeError, shown};

/// Most bytes in a location.
pub const MAX_LOCATION_BYTES: usize = 2048;

/// An absolute `https` or `http` URI naming a resource server (RFC 9396 §2 `locations`).
///
/// Accepted: visible ASCII only, a host (registered name or bracketed IPv6), an optional
/// port, no userinfo, no fragment, at most [`MAX_LOCATION_BYTES`]. The scheme and host are
/// lowercased, a path that is exactly `/` is dropped, and everything else is kept as given;
/// two locations are equal iff these normal forms are equal byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Location(String);

impl Location {
    /// Parses and normalises a location.
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        let fail = |reason| ScopeError::InvalidLocation {
            location: shown(input),
            reason,
        };
        if input.len() > MAX_LOCATION_BYTES {
            return Err(fail("longer than 2048 bytes"));
        }
        if !input.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(fail("only visible ascii characters are allowed"));
        }
        if input.contains('#') {
            return Err(fail("must not have a fragment"));
        }
        let Some((scheme, rest)) = input.split_once("://") else {
            return Err(fail("must be an absolute uri"));
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return Err(fail("scheme must be `https` or `http`"));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(split);
        if authority.contains('@') {
            return Err(fail("must not have userinfo"));
        }
        let (host, port) =
            split_host_port(authority).ok_or_else(|| fail("invalid host or port"))?;
        let tail = match tail.strip_prefix('/') {
            Some(after) if after.is_empty() || after.starts_with('?') => after,
            _ => tail,
        };
        let mut out = String::with_capacity(input.len());
        out.push_str(&scheme);
        out.push_str("://");
        out.push_str(&host.to_ascii_lowercase());
        if let Some(port) = port {
            out.push(':');
            out.push_str(port);
        }
        out.push_str(tail);
        Ok(Self(out))
    }

    /// The normal form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Location {
    type Error = ScopeError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl FromStr for Location {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<Location> for String {
    fn from(value: Location) -> Self {
        value.0
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Splits `host[:port]` (RFC 3986 §3.2.2–3.2.3), checking both. `None` if malformed.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, after) = authority.split_at(close + 1);
        let inner = host.get(1..host.len() - 1)?;
        let ipv6_ok = !inner.is_empty()
            && inner.contains(':')
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ipv6_ok {
            return None;
        }
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !host_ok {
            return None;
        }
        (host, port)
    };
    if let Some(port) = port {
        let port_ok = (1..=5).contains(&port.len())
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| p <= 65_535);
        if !port_ok {
            return None;
        }
    }
    Some((host, port))
}
