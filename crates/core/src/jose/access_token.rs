//! Mandate's access-token claims (RFC 9068 §2.2 and DESIGN §4), written and validated.

use serde_json::{Map, Value};

use crate::encoding::b64url_decode;

use super::claims::{check_window, req_date, req_identifier, req_str};
use super::jws::Verified;
use super::{JoseError, JwtKind};

/// The default of [`AccessTokenExpectation::leeway`], in seconds.
pub const DEFAULT_ACCESS_TOKEN_LEEWAY_SECS: i64 = 30;

/// The claims of a Mandate access token.
///
/// Build one and sign [`AccessTokenClaims::to_value`] with
/// [`sign`](super::sign)`(JwtKind::AccessToken, …)`; read one back with
/// [`AccessTokenClaims::from_verified`]. `authorization_details` is only checked for shape
/// here (an array of objects with a `type`); parse it with [`crate::scope::Scope::parse`]
/// before deciding anything with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenClaims {
    /// The issuer identifier (RFC 9068 §2.2).
    pub iss: String,
    /// The human at the root of the delegation chain.
    pub sub: String,
    /// The locations the token is for; written as a string when there is one.
    pub aud: Vec<String>,
    /// The acting agent.
    pub client_id: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Not before, unix seconds.
    pub nbf: i64,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// The token id.
    pub jti: String,
    /// RFC 9396 authorization details of type `mandate`.
    pub authorization_details: Value,
    /// The actions, space separated, for simple resource servers.
    pub scope: String,
    /// RFC 8693 §4.1 nested actors: the outermost is the current agent.
    pub act: Value,
    /// RFC 9449 §6.1 key binding.
    pub cnf: Confirmation,
    /// The delegation id.
    pub del: String,
    /// The delegation depth.
    pub dpt: u8,
    /// The acting agent's commitment.
    pub cmt: String,
    /// The tenant.
    pub tnt: String,
    /// The Token Status List reference, `{"status_list": {"idx", "uri"}}`.
    pub status: Option<Value>,
    /// The prohibitions of the delegation chain (DESIGN §3), inherited ones included, so that
    /// an offline gate can enforce them: an array of `{"actions", "resources"}` objects,
    /// present only when non-empty. Parse it with [`crate::scope::Prohibitions`] before
    /// deciding anything with it.
    pub prohibitions: Option<Value>,
}

/// The `cnf` claim: the thumbprint of the key a token is bound to (RFC 9449 §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// RFC 7638 thumbprint of the DPoP key, base64url of 32 bytes.
    pub jkt: String,
}

/// What an access token must say to be accepted here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessTokenExpectation<'a> {
    /// The issuer identifier the token must carry exactly.
    pub issuer: &'a str,
    /// The audience that must be among `aud`; `None` where any audience will do
    /// (introspection, which reports `aud` instead).
    pub audience: Option<&'a str>,
    /// The current time, unix seconds.
    pub now: i64,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway: i64,
}

impl<'a> AccessTokenExpectation<'a> {
    /// An expectation with the default leeway.
    pub fn new(issuer: &'a str, audience: Option<&'a str>, now: i64) -> Self {
        Self {
            issuer,
            audience,
            now,
            leeway: DEFAULT_ACCESS_TOKEN_LEEWAY_SECS,
        }
    }
}

impl AccessTokenClaims {
    /// The JWT claims set: `aud` as a string when it has one element (RFC 7519 §4.1.3),
    /// `status` only when present, `prohibitions` only when present and non-empty.
    pub fn to_value(&self) -> Value {
        let mut out = Map::new();
        out.insert("iss".into(), self.iss.clone().into());
        out.insert("sub".into(), self.sub.clone().into());
        let aud = match self.aud.as_slice() {
            [one] => Value::from(one.clone()),
            many => Value::from(many.to_vec()),
        };
        out.insert("aud".into(), aud);
        out.insert("client_id".into(), self.client_id.clone().into());
        out.insert("iat".into(), self.iat.into());
        out.insert("nbf".into(), self.nbf.into());
        out.insert("exp".into(), self.exp.into());
        out.insert("jti".into(), self.jti.clone().into());
        out.insert(
            "authorization_details".into(),
            self.authorization_details.clone(),
        );
        out.insert("scope".into(), self.scope.clone().into());
        out.insert("act".into(), self.act.clone());
        let mut cnf = Map::new();
        cnf.insert("jkt".into(), self.cnf.jkt.clone().into());
        out.insert("cnf".into(), Value::Object(cnf));
        out.insert("del".into(), self.del.clone().into());
        out.insert("dpt".into(), self.dpt.into());
        out.insert("cmt".into(), self.cmt.clone().into());
        out.insert("tnt".into(), self.tnt.clone().into());
        if let Some(status) = &self.status {
            out.insert("status".into(), status.clone());
        }
        if let Some(prohibitions) = &self.prohibitions
            && prohibitions.as_array().is_some_and(|p| !p.is_empty())
        {
            out.insert("prohibitions".into(), prohibitions.clone());
        }
        Value::Object(out)
    }

    /// Reads and validates the claims of a verified access token (RFC 9068 §4): `iss` exactly
    /// the issuer, `aud` containing the expected audience, the validity window, and every
    /// member of the profile present with its type.
    pub fn from_verified(
        verified: &Verified,
        expect: &AccessTokenExpectation<'_>,
    ) -> Result<Self, JoseError> {
        if verified.kind() != JwtKind::AccessToken {
            return Err(JoseError::ApiMisuse {
                reason: "the access-token profile was applied to another kind of token",
            });
        }
        let claims = verified.claims();

        // RFC 9068 §4: "The issuer identifier for the authorization server [...] MUST exactly
        // match the value of the iss claim."
        if req_str(claims, "iss")? != expect.issuer {
            return Err(JoseError::WrongIssuer);
        }

        // RFC 9068 §4: "The resource server MUST validate that the aud claim contains a
        // resource indicator value corresponding to an identifier the resource server expects
        // for itself."
        let aud = audiences(claims)?;
        if let Some(audience) = expect.audience
            && !aud.iter().any(|a| a == audience)
        {
            return Err(JoseError::WrongAudience);
        }

        // RFC 9068 §4: "The current time MUST be before the time represented by the exp
        // claim." RFC 9068 §2.2 requires `iat` and `exp`; our profile always writes `nbf`.
        let exp = req_date(claims, "exp")?;
        let iat = req_date(claims, "iat")?;
        let nbf = req_date(claims, "nbf")?;
        check_window(exp, Some(nbf), Some(iat), expect.now, expect.leeway)?;

        let dpt = claims
            .get("dpt")
            .ok_or(JoseError::MissingClaim { name: "dpt" })?
            .as_u64()
            .and_then(|d| u8::try_from(d).ok())
            .ok_or(JoseError::InvalidClaim { name: "dpt" })?;

        Ok(Self {
            iss: expect.issuer.to_owned(),
            sub: req_identifier(claims, "sub")?.to_owned(),
            aud,
            client_id: req_identifier(claims, "client_id")?.to_owned(),
            iat,
            nbf,
            exp,
            jti: req_identifier(claims, "jti")?.to_owned(),
            authorization_details: authorization_details(claims)?,
            scope: req_str(claims, "scope")?.to_owned(),
            act: actor(claims)?,
            cnf: confirmation(claims)?,
            del: req_identifier(claims, "del")?.to_owned(),
            dpt,
            cmt: req_identifier(claims, "cmt")?.to_owned(),
            tnt: req_identifier(claims, "tnt")?.to_owned(),
            status: status(claims)?,
            prohibitions: prohibitions(claims)?,
        })
    }
}

/// RFC 7519 §4.1.3: `aud` is a string or an array of strings.
fn audiences(claims: &Map<String, Value>) -> Result<Vec<String>, JoseError> {
    let invalid = JoseError::InvalidClaim { name: "aud" };
    match claims.get("aud") {
        None => Err(JoseError::MissingClaim { name: "aud" }),
        Some(Value::String(one)) if !one.is_empty() => Ok(vec![one.clone()]),
        Some(Value::Array(many)) if !many.is_empty() => many
            .iter()
            .map(|a| match a {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                _ => Err(invalid.clone()),
            })
            .collect(),
        Some(_) => Err(invalid),
    }
}

/// RFC 9396 §2: "a JSON array of JSON objects", each with a string `type`.
fn authorization_details(claims: &Map<String, Value>) -> Result<Value, JoseError> {
    let name = "authorization_details";
    let value = claims.get(name).ok_or(JoseError::MissingClaim { name })?;
    let ok = value.as_array().is_some_and(|details| {
        details
            .iter()
            .all(|d| d.get("type").is_some_and(Value::is_string))
    });
    if !ok {
        return Err(JoseError::InvalidClaim { name });
    }
    Ok(value.clone())
}

/// RFC 8693 §4.1: `act` is a JSON object whose `sub` names the actor, and which may nest an
/// `act` for the prior actor. Every level is checked (depth is bounded by the parser).
fn actor(claims: &Map<String, Value>) -> Result<Value, JoseError> {
    let value = claims
        .get("act")
        .ok_or(JoseError::MissingClaim { name: "act" })?;
    let mut level = Some(value);
    while let Some(act) = level {
        let Some(obj) = act.as_object() else {
            return Err(JoseError::InvalidClaim { name: "act" });
        };
        if obj
            .get("sub")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(JoseError::InvalidClaim { name: "act" });
        }
        level = obj.get("act");
    }
    Ok(value.clone())
}

/// RFC 9449 §6.1: `cnf` holds `jkt`, the base64url SHA-256 thumbprint of the DPoP key.
fn confirmation(claims: &Map<String, Value>) -> Result<Confirmation, JoseError> {
    let cnf = claims
        .get("cnf")
        .ok_or(JoseError::MissingClaim { name: "cnf" })?;
    let jkt = cnf
        .get("jkt")
        .and_then(Value::as_str)
        .filter(|j| b64url_decode(j).is_some_and(|raw| raw.len() == 32))
        .ok_or(JoseError::InvalidClaim { name: "cnf" })?;
    Ok(Confirmation {
        jkt: jkt.to_owned(),
    })
}

/// Our `prohibitions` claim, if present: a non-empty array of objects. Only its shape is
/// checked here; parse it with [`crate::scope::Prohibitions`].
fn prohibitions(claims: &Map<String, Value>) -> Result<Option<Value>, JoseError> {
    let name = "prohibitions";
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let ok = value
        .as_array()
        .is_some_and(|items| !items.is_empty() && items.iter().all(Value::is_object));
    if !ok {
        return Err(JoseError::InvalidClaim { name });
    }
    Ok(Some(value.clone()))
}

/// draft-ietf-oauth-status-list §6.1: `status` holds `status_list` with a non-negative
/// integer `idx` and a string `uri`.
fn status(claims: &Map<String, Value>) -> Result<Option<Value>, JoseError> {
    let Some(value) = claims.get("status") else {
        return Ok(None);
    };
    let ok = value.get("status_list").is_some_and(|list| {
        list.get("idx").is_some_and(Value::is_u64)
            && list
                .get("uri")
                .and_then(Value::as_str)
                .is_some_and(|u| !u.is_empty())
    });
    if !ok {
        return Err(JoseError::InvalidClaim { name: "status" });
    }
    Ok(Some(value.clone()))
}
