"""A reference directory adapter for airlock (docs/directory-adapter.md), in Python with the standard library only.

    python3 examples/directory-adapter/adapter.py --db users.db --secrets secrets.txt [--port 0] [--seed accounts.json]
                                                  [--no-hold] [--no-second-factor] [--no-ages]

It keeps a company's users in a SQLite file (`users`, `destinations`, `sessions`, `holds`, `effects`) and speaks
version 1 of the protocol on 127.0.0.1: every request is a POST whose JSON body names its own path (`target`) and
carries a valid Standard Webhooks signature made with one of the secrets in --secrets (one `whsec_...` per line) and a
timestamp within five minutes; an effect is applied once per Idempotency-Key and answered the same way when sent
again (the same key with another account or action is refused); a held account refuses every other case's effect
with 409 (an effect id names its case: `<case_id>/...`).
--seed loads accounts (the shape of `GET /v1/accounts/{id}`, plus `totp_secret` in base32 and `sessions`, a number of
open sessions) before it starts. It prints `listening on http://127.0.0.1:PORT` once it accepts requests.

A real adapter does the same against the company's identity provider: read the factors, apply each change once, and
refuse what is not signed. tests/integrations/directory_adapter.rs runs this one.
"""

import argparse
import base64
import os
import hashlib
import hmac
import json
import sqlite3
import struct
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

TOLERANCE_SECONDS = 5 * 60
BODY_BYTES_MAX = 64 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    account_id TEXT PRIMARY KEY, high_value_reason TEXT, risk_flags TEXT NOT NULL DEFAULT '[]',
    totp_secret TEXT, totp_enrolled_at TEXT, totp_last_step INTEGER, last_credential_change TEXT,
    password_version INTEGER NOT NULL DEFAULT 1, password_hash TEXT);
CREATE TABLE IF NOT EXISTS destinations (
    account_id TEXT NOT NULL, id TEXT NOT NULL, kind TEXT NOT NULL, address TEXT NOT NULL, verified_at TEXT,
    PRIMARY KEY (account_id, id));
CREATE TABLE IF NOT EXISTS sessions (
    account_id TEXT NOT NULL, session_id TEXT NOT NULL, opened_at TEXT NOT NULL, revoked_at TEXT,
    PRIMARY KEY (account_id, session_id));
CREATE TABLE IF NOT EXISTS holds (account_id TEXT NOT NULL, case_id TEXT NOT NULL, PRIMARY KEY (account_id, case_id));
CREATE TABLE IF NOT EXISTS effects (
    idempotency_key TEXT PRIMARY KEY, request TEXT NOT NULL, status INTEGER NOT NULL, answer TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS verifications (idempotency_key TEXT PRIMARY KEY, result TEXT NOT NULL);
"""


# How many accounts one page of `/v1/accounts/list` holds.
PAGE_SIZE = 100


def now_text():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_secrets(path):
    if os.stat(path).st_mode & 0o077:
        raise SystemExit(f"{path} can be read by others: chmod 600 it")
    secrets = []
    with open(path) as file:
        for number, line in enumerate(file, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                if not line.startswith("whsec_"):
                    raise SystemExit(f"{path} line {number}: a secret starts with whsec_")
                secret = base64.b64decode(line.removeprefix("whsec_"), validate=True)
                if len(secret) < 24:
                    raise SystemExit(f"{path} line {number}: a secret holds at least 24 bytes")
                secrets.append(secret)
    if not secrets:
        raise SystemExit(f"{path} holds no secret")
    return secrets


def signature_valid(secrets, headers, body):
    """Standard Webhooks: any `v1,` signature of the header that matches any secret, within the tolerance."""
    message_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "").split()
    if not message_id or not timestamp.isdigit() or not signatures:
        return False, "missing webhook-id, webhook-timestamp or webhook-signature"
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False, "the timestamp is outside the tolerance"
    signed = f"{message_id}.{timestamp}.".encode() + body
    for secret in secrets:
        expected = base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest())
        for given in signatures:
            version, _, value = given.partition(",")
            if version == "v1" and hmac.compare_digest(value.encode(), expected):
                return True, ""
    return False, "no signature matches"


def totp(secret_base32, step):
    """RFC 6238 with SHA-1, six digits, 30-second steps."""
    key = base64.b32decode(secret_base32.upper() + "=" * (-len(secret_base32) % 8))
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 1_000_000:06d}"


class Directory:
    def __init__(self, path, capabilities):
        self.connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.connection.executescript(SCHEMA)
        self.lock = threading.Lock()
        self.capabilities = capabilities

    def seed(self, accounts):
        with self.lock:
            for account in accounts:
                self.connection.execute(
                    "INSERT OR REPLACE INTO users (account_id, high_value_reason, risk_flags, totp_secret, "
                    "totp_enrolled_at, last_credential_change) VALUES (?, ?, ?, ?, ?, ?)",
                    (account["account_id"], account.get("high_value_reason"), json.dumps(account.get("risk_flags", [])),
                     account.get("totp_secret"), account.get("totp_enrolled_at"), account.get("last_credential_change")))
                for destination in account.get("destinations", []):
                    self.connection.execute(
                        "INSERT OR REPLACE INTO destinations VALUES (?, ?, ?, ?, ?)",
                        (account["account_id"], destination["id"], destination["kind"], destination["address"],
                         destination.get("verified_at")))
                for number in range(account.get("sessions", 0)):
                    self.connection.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, NULL)",
                                            (account["account_id"], f"s{number + 1}", now_text()))

    def account(self, account_id):
        with self.lock:
            return self._account(account_id)

    def _account(self, account_id):
        row = self.connection.execute(
            "SELECT high_value_reason, risk_flags, totp_enrolled_at, last_credential_change FROM users "
            "WHERE account_id = ?", (account_id,)).fetchone()
        if row is None:
            return None
        destinations = [
            {"id": id_, "kind": kind, "address": address, "verified_at": verified_at}
            for id_, kind, address, verified_at in self.connection.execute(
                "SELECT id, kind, address, verified_at FROM destinations WHERE account_id = ? ORDER BY rowid",
                (account_id,))]
        return {"account_id": account_id, "high_value_reason": row[0], "risk_flags": json.loads(row[1]),
                "destinations": destinations, "totp_enrolled_at": row[2], "last_credential_change": row[3]}

    def page(self, cursor, size):
        """The accounts after `cursor` (an account id; from the first when None), in id order, and the next cursor."""
        with self.lock:
            ids = [row[0] for row in self.connection.execute(
                "SELECT account_id FROM users WHERE ? IS NULL OR account_id > ? ORDER BY account_id LIMIT ?",
                (cursor, cursor, size + 1))]
            accounts = [self._account(account_id) for account_id in ids[:size]]
        return accounts, (ids[size - 1] if len(ids) > size else None)

    def verify(self, key, account_id, code):
        """Checks a code once: the same request (its Idempotency-Key) sent again gets the first answer."""
        with self.lock:
            answered = self.connection.execute("SELECT result FROM verifications WHERE idempotency_key = ?",
                                               (key,)).fetchone()
            if answered is not None:
                return answered[0]
            result = self._verify(account_id, str(code))
            self.connection.execute("INSERT INTO verifications VALUES (?, ?)", (key, result))
            return result

    def _verify(self, account_id, code):
        row = self.connection.execute(
            "SELECT totp_secret, totp_last_step, totp_enrolled_at FROM users WHERE account_id = ?",
            (account_id,)).fetchone()
        # A removed authenticator proves nothing, even if its secret is still on file.
        if row is None or row[0] is None or row[2] is None:
            return "invalid"
        step = int(time.time()) // 30
        for candidate in (step - 1, step, step + 1):
            if hmac.compare_digest(totp(row[0], candidate).encode(), code.encode()):
                if row[1] is not None and candidate <= row[1]:
                    return "already_used"
                self.connection.execute("UPDATE users SET totp_last_step = ? WHERE account_id = ?",
                                        (candidate, account_id))
                return "valid"
        return "invalid"

    def hold(self, account_id, case_id, held):
        with self.lock:
            if held:
                self.connection.execute("INSERT OR IGNORE INTO holds VALUES (?, ?)", (account_id, case_id))
            else:
                self.connection.execute("DELETE FROM holds WHERE account_id = ? AND case_id = ?", (account_id, case_id))

    def changed_since(self, account_id, seen):
        """The destinations (and "authenticator") that differ from `seen`, the factors airlock's decision saw."""
        if seen is None:
            return []
        current = self._account(account_id) or {"destinations": [], "totp_enrolled_at": None}
        now = {(d["id"], d["kind"], d["address"].strip().lower()) for d in current["destinations"]}
        then = {(d["id"], d["kind"], d["address"].strip().lower()) for d in seen.get("destinations", [])}
        changed = sorted({entry[0] for entry in now ^ then})
        if bool(seen.get("totp_enrolled")) != (current["totp_enrolled_at"] is not None):
            changed.append("authenticator")
        return changed

    def once(self, key, account_id, effect_id, request, apply, precondition=None):
        """Applies `apply` once per idempotency key, refusing while another case holds the account. The same key with
        another account or change (`request`) is refused: a key names one change. `precondition` lists what changed
        since airlock's decision (409 `changed`, nothing recorded, so that airlock may ask again)."""
        with self.lock:
            recorded = self.connection.execute("SELECT request, status, answer FROM effects WHERE idempotency_key = ?",
                                               (key,)).fetchone()
            if recorded is not None:
                if recorded[0] != request:
                    return 422, {"error": {"code": "idempotency_key_reused"}}
                return recorded[1], json.loads(recorded[2])
            if self.connection.execute("SELECT 1 FROM users WHERE account_id = ?", (account_id,)).fetchone() is None:
                return 404, {"error": {"code": "no_such_account"}}
            case_id = effect_id.split("/")[0]
            holder = self.connection.execute("SELECT case_id FROM holds WHERE account_id = ? AND case_id != ?",
                                             (account_id, case_id)).fetchone()
            if holder is not None:
                return 409, {"error": {"code": "held", "case": holder[0]}}
            changed = precondition() if precondition else []
            if changed:
                return 409, {"error": {"code": "changed", "changes": changed}}
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                answer = {"changes": apply()}
                self.connection.execute("INSERT INTO effects VALUES (?, ?, ?, ?)", (key, request, 200, json.dumps(answer)))
                self.connection.execute("COMMIT")
            except Exception:
                self.connection.execute("ROLLBACK")
                raise
            return 200, answer

    def end_sessions(self, account_id, since, at):
        opened = self.connection.execute(
            "SELECT session_id FROM sessions WHERE account_id = ? AND opened_at >= ? AND revoked_at IS NULL "
            "ORDER BY session_id", (account_id, since)).fetchall()
        self.connection.execute(
            "UPDATE sessions SET revoked_at = ? WHERE account_id = ? AND opened_at >= ? AND revoked_at IS NULL",
            (at, account_id, since))
        return [{"record": f"session:{session}", "old": "open", "new": "revoked"} for (session,) in opened]

    def apply(self, account_id, action, at):
        kind = action.get("type")
        if kind == "reset_password":
            (version,) = self.connection.execute("SELECT password_version FROM users WHERE account_id = ?",
                                                 (account_id,)).fetchone()
            self.connection.execute(
                "UPDATE users SET password_version = ?, last_credential_change = ? WHERE account_id = ?",
                (version + 1, at, account_id))
            changes = [{"record": "password", "old": f"v{version}", "new": f"v{version + 1}"}]
        elif kind == "add_destination":
            (count,) = self.connection.execute("SELECT COUNT(*) FROM destinations WHERE account_id = ?",
                                               (account_id,)).fetchone()
            destination = f"{account_id}-{action['kind']}-{count + 1}"
            self.connection.execute("INSERT INTO destinations VALUES (?, ?, ?, ?, ?)",
                                    (account_id, destination, action["kind"], action["address"], at))
            changes = [{"record": f"destination:{destination}", "old": None,
                        "new": f"{action['kind']}:{action['address']}"}]
        elif kind == "remove_totp":
            (enrolled,) = self.connection.execute("SELECT totp_enrolled_at FROM users WHERE account_id = ?",
                                                  (account_id,)).fetchone()
            self.connection.execute("UPDATE users SET totp_enrolled_at = NULL WHERE account_id = ?", (account_id,))
            changes = [{"record": "totp", "old": enrolled, "new": None}]
        else:
            raise ValueError(f"unknown action {kind!r}")
        return changes + self.end_sessions(account_id, "", at)

    def set_password(self, account_id, password, at):
        """The owner's new password, from airlock's set-password page: kept as a salted PBKDF2 hash, never as text."""
        if not isinstance(password, str) or not 12 <= len(password) <= 128:
            raise ValueError("password length")
        salt = os.urandom(16)
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 600_000)
        stored = f"pbkdf2_sha256$600000${salt.hex()}${digest.hex()}"
        (version,) = self.connection.execute("SELECT password_version FROM users WHERE account_id = ?",
                                             (account_id,)).fetchone()
        self.connection.execute(
            "UPDATE users SET password_version = ?, password_hash = ?, last_credential_change = ? WHERE account_id = ?",
            (version + 1, stored, at, account_id))
        return [{"record": "password", "old": f"v{version}", "new": f"v{version + 1} (set by the owner)"}]

    def revert(self, account_id, reversal, since, at):
        changes = []
        for change in reversal:
            record = change["record"]
            if record == "password":
                # Undoing a reset also ends any password set through its link since: the hash goes with it.
                version = int(change["new"].removeprefix("v"))
                self.connection.execute(
                    "UPDATE users SET password_version = ?, password_hash = NULL WHERE account_id = ?",
                    (version, account_id))
            elif record == "totp":
                self.connection.execute("UPDATE users SET totp_enrolled_at = ? WHERE account_id = ?",
                                        (change["new"], account_id))
            elif record.startswith("destination:") and change["new"] is None:
                self.connection.execute("DELETE FROM destinations WHERE account_id = ? AND id = ?",
                                        (account_id, record.removeprefix("destination:")))
            else:
                continue
            changes.append(change)
        return changes + self.end_sessions(account_id, since, at)


class Handler(BaseHTTPRequestHandler):
    directory = None
    secrets = []

    def log_message(self, format, *args):  # keep the test output quiet; a real adapter logs to its own collector
        pass

    def answer(self, status, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > BODY_BYTES_MAX:
            return self.answer(413, {"error": {"code": "bad_length"}})
        body = self.rfile.read(length)
        valid, reason = signature_valid(self.secrets, {k.lower(): v for k, v in self.headers.items()}, body)
        if not valid:
            return self.answer(401, {"error": {"code": "unsigned", "reason": reason}})
        try:
            request = json.loads(body)
        except ValueError:
            return self.answer(400, {"error": {"code": "not_json"}})
        # The signature covers the body, and the body names the path: a signed request replayed at another path (another
        # account, case or effect) is refused.
        if not isinstance(request, dict) or request.get("target") != self.path:
            return self.answer(401, {"error": {"code": "wrong_target"}})
        try:
            return self.route(request)
        except (KeyError, TypeError, ValueError) as error:
            return self.answer(400, {"error": {"code": "bad_request", "reason": type(error).__name__}})

    def route(self, request):
        parts = [unquote(part) for part in self.path.split("?")[0].strip("/").split("/")]
        directory = self.directory
        if parts == ["v1", "capabilities"]:
            return self.answer(200, {"version": 1, **directory.capabilities})
        if parts == ["v1", "accounts", "list"]:
            cursor = request.get("cursor")
            if cursor is not None and not isinstance(cursor, str):
                return self.answer(400, {"error": {"code": "bad_cursor"}})
            accounts, following = directory.page(cursor, PAGE_SIZE)
            return self.answer(200, {"accounts": accounts, "next": following})
        if len(parts) < 4 or parts[:2] != ["v1", "accounts"]:
            return self.answer(404, {"error": {"code": "no_such_call"}})
        account_id, rest = parts[2], parts[3:]
        if rest == ["read"]:
            account = directory.account(account_id)
            return self.answer(404, {"error": {"code": "no_such_account"}}) if account is None else self.answer(200, account)
        if rest == ["second-factor", "verify"]:
            key = self.headers.get("Idempotency-Key", "")
            return self.answer(200, {"result": directory.verify(key, account_id, request["code"])})
        if len(rest) == 3 and rest[0] == "holds" and rest[2] in ("hold", "release"):
            directory.hold(account_id, rest[1], rest[2] == "hold")
            return self.answer(204)
        if len(rest) == 2 and rest[0] in ("effects", "reversals", "passwords"):
            key = self.headers.get("Idempotency-Key", "")
            if key != rest[1]:
                return self.answer(400, {"error": {"code": "idempotency_key", "reason": "must be the effect id"}})
            if rest[0] == "passwords":
                # The request kept for the key names the account only: the password is never stored as text.
                change = "password"
                work = lambda: directory.set_password(account_id, request["password"], request["at"])
            elif rest[0] == "effects":
                change = json.dumps(request["action"], sort_keys=True)
                work = lambda: directory.apply(account_id, request["action"], request["at"])
            else:
                change = json.dumps(request["reversal"], sort_keys=True)
                work = lambda: directory.revert(account_id, request["reversal"], request["sessions_since"],
                                                request["at"])
            precondition = (lambda: directory.changed_since(account_id, request.get("seen"))) \
                if rest[0] == "effects" else None
            status, answer = directory.once(f"{rest[0]}:{key}", account_id, rest[1], f"{account_id}\n{change}", work,
                                            precondition)
            return self.answer(status, answer)
        return self.answer(404, {"error": {"code": "no_such_call"}})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--secrets", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed")
    parser.add_argument("--no-hold", action="store_true")
    parser.add_argument("--no-second-factor", action="store_true")
    parser.add_argument("--no-ages", action="store_true", help="say the directory keeps no age per destination")
    arguments = parser.parse_args()
    capabilities = {"hold": not arguments.no_hold, "verify_second_factor": not arguments.no_second_factor,
                    "revoke_sessions": True, "per_factor_ages": not arguments.no_ages}
    Handler.directory = Directory(arguments.db, capabilities)
    Handler.secrets = load_secrets(arguments.secrets)
    if arguments.seed:
        with open(arguments.seed) as file:
            Handler.directory.seed(json.load(file))
    server = ThreadingHTTPServer(("127.0.0.1", arguments.port), Handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
