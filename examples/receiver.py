#!/usr/bin/env python3
"""A webhook receiver for the quickstart: verifies wasmhook's signature with
the code from the FraiseQL webhook docs and prints what arrived.

    python3 examples/receiver.py            # listens on 127.0.0.1:9000
"""
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = os.environ.get("WEBHOOK_SIGNING_SECRET", "quickstart-secret")


def verify_webhook(payload: bytes, signature: str, timestamp: str, secret: str, max_age_seconds: int = 300) -> bool:
    ts = int(timestamp)
    if abs(time.time() - ts) > max_age_seconds:
        return False
    message = f"{timestamp}.".encode() + payload
    expected = "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature, expected)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = verify_webhook(
            body,
            self.headers.get("X-Wasmhook-Signature", ""),
            self.headers.get("X-Wasmhook-Timestamp", "0"),
            SECRET,
        )
        delivery = self.headers.get("X-Wasmhook-Delivery")
        print(f"{self.path} delivery={delivery} signature={'valid' if ok else 'INVALID'}")
        print("  " + json.dumps(json.loads(body)), flush=True)
        self.send_response(200 if ok else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    print(f"receiver on http://127.0.0.1:{port}", flush=True)
    HTTPServer(("127.0.0.1", port), Handler).serve_forever()
