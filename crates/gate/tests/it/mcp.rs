//! MCP Streamable HTTP: tool calls decided per tool, header/body agreement, filtered tool
//! lists, amounts, approvals, and housekeeping messages.

use serde_json::{Value, json};

use crate::harness::{Dpop, World};

fn call(id: u64, name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_are_decided_one_by_one() {
    let w = World::new().await;
    let dpop = Dpop::new(60);
    let token = w.token(&dpop).await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, _, body) = w.mcp(&token, &dpop, init, &[]).await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(body["result"]["serverInfo"]["name"], "test");
    let (status, _, _) = w
        .mcp(
            &token,
            &dpop,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            &[],
        )
        .await;
    assert_eq!(status, 202);
    let (status, _, body) = w
        .mcp(
            &token,
            &dpop,
            json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}),
            &[],
        )
        .await;
    assert_eq!((status, &body["result"]), (200, &json!({})));

    // Allowed.
    let (status, _, body) = w
        .mcp(
            &token,
            &dpop,
            call(3, "read_ticket", json!({"ticket_id": "42"})),
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], 3);
    assert_eq!(body["result"]["content"][0]["text"], "ran \"read_ticket\"");
    assert_eq!(w.upstream.tool_calls(), ["read_ticket"]);
    let hit = w.upstream.last();
    assert!(hit.headers.get("authorization").is_none());
    assert!(hit.headers.get("dpop").is_none());
    assert_eq!(hit.headers["x-mandate-agent"], w.agent.id.as_str());
    assert!(
        hit.headers["x-mandate-receipt"]
            .to_str()
            .unwrap()
            .starts_with("gdr_")
    );

    // Not granted (`customers/*`), not mapped, and other methods: JSON-RPC errors.
    let before = w.upstream.count();
    for (message, reason) in [
        (
            call(4, "close_account", json!({"customer_id": "9"})),
            "insufficient_scope",
        ),
        (call(5, "unmapped_tool", json!({})), "unmapped"),
        (
            json!({"jsonrpc": "2.0", "id": 6, "method": "resources/read", "params": {"uri": "file:///etc/passwd"}}),
            "unmapped",
        ),
        (
            json!({"jsonrpc": "2.0", "id": 7, "method": "prompts/get", "params": {"name": "x"}}),
            "unmapped",
        ),
    ] {
        let id = message["id"].clone();
        let (status, _, body) = w.mcp(&token, &dpop, message, &[]).await;
        assert_eq!(status, 200, "{body:?}");
        assert_eq!(body["id"], id);
        assert_eq!(body["error"]["code"], -32003, "{body:?}");
        assert_eq!(body["error"]["data"]["error"], "insufficient_scope");
        assert_eq!(body["error"]["data"]["reason"], reason);
        assert!(
            body["error"]["data"]["receipt"]
                .as_str()
                .unwrap()
                .starts_with("gdr_")
        );
    }
    // An argument that would change the resource's shape is refused as invalid.
    let (status, _, body) = w
        .mcp(
            &token,
            &dpop,
            call(
                8,
                "read_ticket",
                json!({"ticket_id": "1/../../customers/9"}),
            ),
            &[],
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (200, &json!(-32602)),
        "{body:?}"
    );
    // A declared input left out is refused too (an absent amount would not be limited).
    let (status, _, body) = w
        .mcp(
            &token,
            &dpop,
            call(9, "refund_order", json!({"order_id": "A-1"})),
            &[],
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (200, &json!(-32602)),
        "{body:?}"
    );
    assert_eq!(w.upstream.count(), before, "no denial reaches the upstream");

    // Batches are refused whole.
    let batch = json!([
        call(9, "read_ticket", json!({"ticket_id": "1"})),
        call(10, "close_account", json!({"customer_id": "9"}))
    ]);
    let (status, _, body) = w.mcp(&token, &dpop, batch, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], -32600);
    assert_eq!(w.upstream.count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_that_disagree_with_the_body_are_refused() {
    let w = World::new().await;
    let dpop = Dpop::new(61);
    let token = w.token(&dpop).await;
    let msg = call(1, "read_ticket", json!({"ticket_id": "42"}));
    for headers in [
        vec![("Mcp-Method", "tools/call"), ("Mcp-Name", "delete_ticket")],
        vec![("Mcp-Method", "tools/list"), ("Mcp-Name", "read_ticket")],
        vec![("Mcp-Method", "ping")],
        vec![("Mcp-Name", "close_account")],
    ] {
        let (status, _, body) = w.mcp(&token, &dpop, msg.clone(), &headers).await;
        assert_eq!(status, 400, "{headers:?}");
        assert_eq!(body["error"]["code"], -32001, "{body:?}");
        assert_eq!(body["id"], 1);
    }
    assert_eq!(w.upstream.count(), 0);
    // Positive control: agreeing headers.
    let (status, _, body) = w
        .mcp(
            &token,
            &dpop,
            msg,
            &[("Mcp-Method", "tools/call"), ("Mcp-Name", "read_ticket")],
        )
        .await;
    assert_eq!(status, 200, "{body:?}");
    assert!(body["result"].is_object());
    assert_eq!(w.upstream.tool_calls(), ["read_ticket"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_lists_show_only_callable_tools() {
    let w = World::new().await;
    let dpop = Dpop::new(62);
    let token = w.token(&dpop).await;
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let expected = ["read_ticket", "refund_order", "delete_ticket"];
    for headers in [vec![], vec![("x-test-sse", "1")]] {
        let (status, resp_headers, body) = w.mcp(&token, &dpop, list.clone(), &headers).await;
        assert_eq!(status, 200, "{body:?}");
        if !headers.is_empty() {
            assert_eq!(resp_headers["content-type"], "text/event-stream");
        }
        let names: Vec<&str> = body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, expected, "{body:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amounts_and_approvals() {
    let w = World::new().await;
    let dpop = Dpop::new(63);
    let token = w.token(&dpop).await;
    let (_, _, body) = w
        .mcp(
            &token,
            &dpop,
            call(
                1,
                "refund_order",
                json!({"order_id": "A-1", "amount": 20, "currency": "USD"}),
            ),
            &[],
        )
        .await;
    assert!(body["result"].is_object(), "{body:?}");
    let (_, _, body) = w
        .mcp(
            &token,
            &dpop,
            call(
                2,
                "refund_order",
                json!({"order_id": "A-1", "amount": 250, "currency": "USD"}),
            ),
            &[],
        )
        .await;
    assert_eq!(body["error"]["data"]["reason"], "max_amount", "{body:?}");
    assert_eq!(w.upstream.tool_calls(), ["refund_order"]);

    // Approval: refused with an id, approved once, works once, refused on replay.
    let delete = call(3, "delete_ticket", json!({"ticket_id": "7"}));
    let (_, _, body) = w.mcp(&token, &dpop, delete.clone(), &[]).await;
    assert_eq!(
        body["error"]["data"]["reason"], "approval_pending",
        "{body:?}"
    );
    let approval = body["error"]["data"]["approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&approval)
    );
    w.auth
        .post(&format!("/v1/approvals/{approval}/approve"), json!({}))
        .await;
    // Other arguments are another request.
    let (_, _, body) = w
        .mcp(
            &token,
            &dpop,
            call(4, "delete_ticket", json!({"ticket_id": "8"})),
            &[],
        )
        .await;
    assert_eq!(body["error"]["data"]["reason"], "approval_pending");
    let (_, _, body) = w.mcp(&token, &dpop, delete.clone(), &[]).await;
    assert!(body["result"].is_object(), "{body:?}");
    let (_, _, body) = w.mcp(&token, &dpop, delete, &[]).await;
    assert_eq!(body["error"]["data"]["reason"], "approval_pending");
    assert_ne!(body["error"]["data"]["approval_id"], approval.as_str());
    assert_eq!(w.upstream.tool_calls(), ["refund_order", "delete_ticket"]);
}
