//! Discovery, JWKS, OpenAPI and authentication basics.

use reqwest::Method;

use crate::harness::{self, ADMIN_KEY};

#[tokio::test]
async fn discovery_and_jwks() {
    let s = harness::start().await;
    let m = s
        .call(
            Method::GET,
            "/.well-known/oauth-authorization-server",
            None,
            None,
        )
        .await;
    assert_eq!(m.status, 200);
    assert_eq!(m.body["issuer"], s.running.issuer);
    assert_eq!(
        m.body["jwks_uri"],
        format!("{}/jwks.json", s.running.issuer)
    );
    assert_eq!(
        m.body["authorization_details_types_supported"][0],
        "mandate"
    );
    assert_eq!(
        m.body["token_endpoint_auth_methods_supported"],
        serde_json::json!(["private_key_jwt"])
    );
    let j = s.call(Method::GET, "/jwks.json", None, None).await;
    assert_eq!(j.status, 200);
    let key = &j.body["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["use"], "sig");
    assert!(
        key.get("d").is_none(),
        "the private key must never be published"
    );
    let public = mandate_core::jwk::PublicJwk::from_json(
        &serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": key["x"]}),
    )
    .unwrap();
    assert_eq!(key["kid"], public.thumbprint());
    // The signing key file is private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.dir.path().join("data/signing-keys.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn authentication_is_required_and_uniform() {
    let s = harness::start().await;
    for key in [
        None,
        Some("mnd_wrong_key_000000000000000000000000"),
        Some(""),
    ] {
        let r = s.call(Method::GET, "/v1/agents", key, None).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"mandate\"");
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert_eq!(r.body["type"], "urn:mandate:problem:unauthorized");
    }
    let r = s.get("/v1/me", ADMIN_KEY).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["human"]["role"], "owner");
}

#[tokio::test]
async fn auditors_read_but_never_write() {
    let s = harness::start().await;
    let (_, auditor) = s.human(ADMIN_KEY, "audrey", "auditor").await;
    let (admin_id, admin) = s.human(ADMIN_KEY, "adam", "admin").await;
    assert_eq!(s.get("/v1/agents", &auditor).await.status, 200);
    assert_eq!(s.get("/v1/receipts", &auditor).await.status, 200);
    let before = s.receipts(ADMIN_KEY).await.len();
    let r = s.post("/v1/agents", &auditor, serde_json::json!({"name": "x", "owner": admin_id, "purpose": "p", "ceiling": harness::ceiling()})).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // An admin may not mint owners or take an owner's credentials.
    let r = s
        .post(
            "/v1/humans",
            &admin,
            serde_json::json!({"name": "o", "email": "o@x.y", "role": "owner"}),
        )
        .await;
    assert_eq!(r.status, 403);
    let me = s.get("/v1/me", ADMIN_KEY).await.body["human"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .post(
            &format!("/v1/humans/{me}/api-keys"),
            &admin,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(s.receipts(ADMIN_KEY).await.len(), before);
}

#[tokio::test]
async fn openapi_documents_every_served_route() {
    let s = harness::start().await;
    let doc = s.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    let paths = doc.body["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let Ok(m) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            if !["GET", "POST", "DELETE", "PUT", "PATCH"].contains(&m.as_str()) {
                continue;
            }
            let concrete = path
                .replace("{action}", "suspend")
                .replace("{id}", "agt_00000000000000000000000000")
                .replace("{kid}", "k")
                .replace("{jti}", "x")
                .replace("{n}", "0");
            let r = s.call(m.clone(), &concrete, None, None).await;
            assert!(
                r.status != 404 || r.body["detail"] != "route not found",
                "{m} {path} is documented but not served"
            );
            assert_ne!(r.status, 405, "{m} {path} is documented but not served");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} operations documented");
    // And unknown routes are problem documents too.
    let r = s.call(Method::GET, "/v1/nope", Some(ADMIN_KEY), None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["type"], "urn:mandate:problem:not-found");
    let r = s
        .call(Method::PUT, "/v1/agents", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.body["type"], "urn:mandate:problem:method-not-allowed");
}
