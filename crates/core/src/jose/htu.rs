//! A small, pure normaliser for the `htu` comparison of RFC 9449 §4.3 (9).
//!
//! RFC 9449 §4.3: "To reduce the likelihood of false negatives, servers SHOULD employ
//! syntax-based normalization (Section 6.2.2 of [RFC3986]) and scheme-based normalization
//! (Section 6.2.3 of [RFC3986]) before comparing the htu claim."
//!
//! Only absolute `http` / `https` URIs are accepted, without userinfo (RFC 9110 §4.2.4 forbids
//! it in http(s) URIs) and with only RFC 3986 characters (a `\`, a space or non-ASCII is
//! refused rather than guessed at). The query and the fragment are dropped.

/// The normal form `scheme://host[:port]/path` of an http(s) URI, or `None` if it is not one.
pub(crate) fn normalize(uri: &str) -> Option<String> {
    // RFC 9449 §4.3 (9): "ignoring any query and fragment parts".
    let uri = uri.split_once('#').map_or(uri, |(before, _)| before);
    let uri = uri.split_once('?').map_or(uri, |(before, _)| before);
    let (scheme, rest) = uri.split_once("://")?;
    // RFC 3986 §6.2.2.1: the scheme is case-insensitive.
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, ""),
    };
    let (host, port) = split_authority(authority)?;
    // RFC 3986 §6.2.3: "http://example.com:80/" and "http://example.com/" are equivalent,
    // as are an empty path and "/".
    let port = match port {
        None => None,
        Some(p) if p == default_port => None,
        Some(p) => Some(p),
    };
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        remove_dot_segments(&normalize_percent(path)?)
    };
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}{path}"),
        None => format!("{scheme}://{host}{path}"),
    })
}

/// Host (lowercased, RFC 3986 §6.2.2.1) and port (`None` when absent or empty, §6.2.3).
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        // RFC 3986 §3.2.2: IP-literal = "[" ( IPv6address / IPvFuture ) "]".
        let end = authority.find(']')?;
        let host = authority.get(..=end)?;
        let inner = host.get(1..end)?;
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        let rest = authority.get(end + 1..)?;
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return None,
        };
        (host, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        // reg-name without percent-encoding: no HTTP host needs it.
        if host.is_empty() || !host.bytes().all(|b| is_unreserved(b) || is_sub_delim(b)) {
            return None;
        }
        (host, port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            let n: u16 = p.parse().ok()?;
            if n == 0 {
                return None;
            }
            Some(n)
        }
        Some(_) => return None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// RFC 3986 §6.2.2.1 and §6.2.2.2: percent-encoded octets in uppercase hex, and those that
/// encode unreserved characters decoded. Any character outside `pchar` / `/` is refused.
fn normalize_percent(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            let octet = (hi << 4) | lo;
            if is_unreserved(octet) {
                out.push(char::from(octet));
            } else {
                // `hi` and `lo` are below 16: they came from `hex_value`.
                out.push('%');
                out.push(char::from(HEX_UPPER[usize::from(hi)]));
                out.push(char::from(HEX_UPPER[usize::from(lo)]));
            }
            i += 3;
        } else if is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@' | b'/') {
            out.push(char::from(b));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// RFC 3986 §5.2.4 (used by §6.2.2.3) on an absolute path: `.` and `..` segments removed.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    out.pop();
                }
                // A trailing dot segment leaves a trailing slash: "/a/b/.." is "/a/".
                if i == last {
                    out.push("");
                }
            }
            other => out.push(other),
        }
    }
    format!("/{}", out.join("/"))
}

/// RFC 3986 §2.3: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~".
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §2.2: sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "=".
fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
