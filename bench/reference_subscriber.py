"""The reference subscriber of the bench harness (issue 7).

What the FraiseQL docs tell a user to write to turn NATS events into signed
webhooks: a nats-py subscription whose callback builds the body, signs it
with hmac as in the docs' `send_signed_webhook` (sha256 over
"<timestamp>.<body>", headers X-Signature and X-Timestamp), and POSTs it with
httpx. By default it reuses one `httpx.AsyncClient`, as a competent user
would; with --client-per-event it opens one per event, as the docs' example
does verbatim (`async with httpx.AsyncClient() as client:` in the callback).

The body has the same fields as wasmhook's template in the harness, and the
event's `sent_ns` goes back in X-Bench-Sent so the receiver can time it.
Needs `pip install nats-py httpx`. Prints "ready" once subscribed.
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import time

import httpx
import nats


def signed_headers(body: bytes, secret: str, sent_ns) -> dict:
    timestamp = str(int(time.time()))
    message = f"{timestamp}.".encode() + body
    signature = "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Signature": signature,
        "X-Timestamp": timestamp,
        "X-Bench-Sent": str(sent_ns),
    }


def render(event: dict) -> tuple[bytes, object]:
    entity = event["entity"]
    body = json.dumps(
        {
            "event": f"{event['entity_type']}.UPDATE",
            "order_id": event["entity_id"],
            "total": entity.get("total"),
            "status": entity.get("status"),
            "sent_ns": entity.get("sent_ns"),
            "data": entity,
        }
    ).encode()
    return body, entity.get("sent_ns")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nats", required=True)
    parser.add_argument("--subject", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--client-per-event", action="store_true")
    args = parser.parse_args()

    shared = httpx.AsyncClient()

    async def handle(msg):
        event = json.loads(msg.data.decode())
        body, sent_ns = render(event)
        headers = signed_headers(body, args.secret, sent_ns)
        if args.client_per_event:
            async with httpx.AsyncClient() as client:
                await client.post(args.url, content=body, headers=headers, timeout=10.0)
        else:
            await shared.post(args.url, content=body, headers=headers, timeout=10.0)

    nc = await nats.connect(args.nats)
    await nc.subscribe(args.subject, cb=handle)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
