"""A small MCP server (official Python SDK, Streamable HTTP) with three tools, for gate tests.

    python mcp_tools_server.py HITS_FILE

Binds 127.0.0.1 on a free port, prints `PORT <n>` once it listens, and appends the name of
every tool actually executed to HITS_FILE, so a test can prove a denied call never arrived.
"""

import socket
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

HITS = sys.argv[1]
server = MCPServer("support-tools")


def hit(name):
    with open(HITS, "a", encoding="utf-8") as f:
        f.write(name + "\n")


@server.tool()
def read_ticket(ticket_id: str) -> str:
    """Read a support ticket."""
    hit("read_ticket")
    return f"ticket {ticket_id}: printer on fire"


@server.tool()
def refund_order(order_id: str, amount: float) -> str:
    """Refund an order."""
    hit("refund_order")
    return f"refunded {amount} on {order_id}"


@server.tool()
def delete_ticket(ticket_id: str) -> str:
    """Delete a support ticket."""
    hit("delete_ticket")
    return f"deleted {ticket_id}"


@server.tool()
def close_account(customer_id: str) -> str:
    """Close a customer's account."""
    hit("close_account")
    return f"closed {customer_id}"


def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    app = server.streamable_http_app(stateless_http=True, json_response=True)
    config = uvicorn.Config(app, log_level="warning")
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
