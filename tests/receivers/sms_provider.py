"""A stand-in SMS provider: an HTTP endpoint that takes airlock's signed JSON messages (docs/sms-provider.md) and
verifies each with the Standard Webhooks reference library (`standardwebhooks` from PyPI, not airlock's code). It
records every attempt, one JSON line each, in --record; a verified message answers 200 (unless the provider is still
"down"), anything else 401.

    sms_provider.py --secret whsec_... --record FILE [--down N]

Prints `listening on URL` and serves until killed. With --down N the first N verified attempts answer 503, as a
provider that is down for a while would.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--down", type=int, default=0)
    args = parser.parse_args()
    verifier = Webhook(args.secret)
    lock = threading.Lock()
    state = {"down": args.down}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            try:
                verifier.verify(body, headers)
                verified, problem = True, None
            except WebhookVerificationError as error:
                verified, problem = False, str(error)
            with lock:
                status = 401 if not verified else (503 if state["down"] > 0 else 200)
                if verified and state["down"] > 0:
                    state["down"] -= 1
                message = json.loads(body) if verified else None
                with open(args.record, "a") as record:
                    record.write(json.dumps({"id": headers.get("webhook-id"), "status": status, "verified": verified,
                                             "problem": problem, "message": message}) + "\n")
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening on http://127.0.0.1:{server.server_port}/sms", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
