"""A stand-in for a company's webhook receiver (a SIEM, a ticketing system): an HTTP endpoint that takes airlock's
signed event documents (docs/events-out.md) and verifies each with the Standard Webhooks reference library
(`standardwebhooks` from PyPI, not airlock's code: it checks the signature and that the timestamp is within five
minutes). A request it has already taken, sent again exactly as it was (same id, timestamp and signature), is a replay
and refused with 409; the same id sent again with a new signature (airlock trying again) is taken again, as a
duplicate the receiver can drop by its id.

    webhook_receiver.py --secret whsec_... --record FILE --mode FILE

Prints `listening on URL` and serves until killed. Every attempt is one JSON line in --record: id, status, verified,
problem, mode, and the document when verified. How it answers is read from --mode on each request (missing: up):
  up        200
  down      503
  slow      holds the answer while the mode stays slow (at most 30 s), then 200
  garbage   writes bytes that are not HTTP and hangs up
  redirect  302 to another address
"""

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--mode", required=True)
    args = parser.parse_args()
    verifier = Webhook(args.secret)
    lock = threading.Lock()
    taken = set()
    changed = threading.Event()

    def mode():
        try:
            with open(args.mode) as file:
                return file.read().strip() or "up"
        except FileNotFoundError:
            return "up"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            current = mode()
            signed = (headers.get("webhook-id"), headers.get("webhook-timestamp"), headers.get("webhook-signature"))
            try:
                verifier.verify(body, headers)
                verified, problem = True, None
            except WebhookVerificationError as error:
                verified, problem = False, str(error)
            with lock:
                if verified and signed in taken:
                    verified, problem = False, "replayed: this exact request was taken before"
                    status = 409
                elif not verified:
                    status = 401
                else:
                    status = {"up": 200, "down": 503, "slow": 200, "redirect": 302}.get(current, 0)
                if status == 200:
                    taken.add(signed)
                with open(args.record, "a") as record:
                    record.write(json.dumps({
                        "id": headers.get("webhook-id"), "status": status, "verified": verified, "problem": problem,
                        "mode": current, "message": json.loads(body) if verified else None,
                        "timestamp": signed[1], "signature": signed[2], "body": body.decode("utf-8", "replace"),
                    }) + "\n")
            if verified and current == "slow":
                # Holds the answer while the test keeps the receiver slow (at most 30 s): longer than the test's
                # --webhook-timeout, so airlock gives up on it.
                deadline = time.monotonic() + 30
                while mode() == "slow" and time.monotonic() < deadline:
                    changed.wait(0.05)
            if status == 0:
                self.wfile.write(b"\x00\x01garbage that is not HTTP\r\n\r\n")
                self.wfile.flush()
                self.close_connection = True
                return
            self.send_response(status)
            if status == 302:
                self.send_header("location", "http://127.0.0.1:9/elsewhere")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_port}/airlock-events", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
