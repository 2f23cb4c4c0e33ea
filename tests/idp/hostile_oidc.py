"""A small OpenID Connect provider that misbehaves on request, to prove airlock refuses what a real provider (canaille)
never sends: a tampered ID token, one for another client, another issuer, an expired one, one for another sign-in
(its nonce), an unsigned one, one signed with a key the provider does not publish; and it honours an authorization
code as many times as it is sent, so that airlock's own refusal of a replayed code is what the test sees.

    hostile_oidc.py --client-id ID --client-secret-file FILE

Prints `listening on URL` (the issuer) and serves until killed. The authorization endpoint signs in at once whoever
the query names: `airlock_test_user` (the subject), `airlock_test_groups` (comma-separated) and `airlock_test_mode`
(how the ID token is to be wrong; `good` by default). Tokens are RS256 with joserfc (a maintained JOSE library).
"""

import argparse
import base64
import json
import secrets
import sys
import threading
import time
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

KEY = RSAKey.generate_key(2048, parameters={"kid": "hostile-1", "use": "sig", "alg": "RS256"})
# Not published: a token signed with it under the published key's id must not verify.
FOREIGN = RSAKey.generate_key(2048, parameters={"kid": "hostile-1", "use": "sig", "alg": "RS256"})
CODES = {}
LOCK = threading.Lock()


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def id_token(issuer, client_id, grant):
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": grant["user"],
        "aud": client_id,
        "iat": now,
        "exp": now + 300,
        "auth_time": now,
        "nonce": grant["nonce"],
        "amr": ["pwd", "otp"],
        "groups": grant["groups"],
    }
    mode = grant["mode"]
    if mode == "other_audience":
        claims["aud"] = "another-client"
    elif mode == "other_issuer":
        claims["iss"] = "https://idp.example"
    elif mode == "expired":
        claims["iat"], claims["exp"] = now - 7200, now - 3600
    elif mode == "wrong_nonce":
        claims["nonce"] = "a-nonce-of-another-sign-in"
    header = {"alg": "RS256", "kid": "hostile-1"}
    if mode == "unsigned":
        return f"{b64(json.dumps({'alg': 'none'}).encode())}.{b64(json.dumps(claims).encode())}."
    signed = jwt.encode(header, claims, FOREIGN if mode == "foreign_key" else KEY)
    if mode == "tampered":
        # The signature of the honest claims, over claims that now make the person an operator.
        head, _, signature = signed.split(".")
        claims["groups"] = grant["groups"] + ["airlock-operators"]
        signed = f"{head}.{b64(json.dumps(claims).encode())}.{signature}"
    return signed


def app(issuer, client_id, client_secret):
    def serve(environ, start_response):
        request = Request(environ)
        path = request.path
        if path == "/.well-known/openid-configuration":
            body = {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "jwks_uri": f"{issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
            }
            response = Response(json.dumps(body), content_type="application/json")
        elif path == "/jwks":
            response = Response(json.dumps({"keys": [KEY.as_dict(private=False)]}), content_type="application/json")
        elif path == "/authorize":
            query = request.args
            code = secrets.token_urlsafe(24)
            with LOCK:
                CODES[code] = {
                    "nonce": query.get("nonce", ""),
                    "user": query.get("airlock_test_user", "nobody"),
                    "groups": [g for g in query.get("airlock_test_groups", "").split(",") if g],
                    "mode": query.get("airlock_test_mode", "good"),
                }
            target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query.get("state", "")})
            response = Response(status=302, headers={"Location": target})
        elif path == "/token" and request.method == "POST":
            auth = request.authorization
            given = (auth.username, auth.password) if auth else (request.form.get("client_id"),
                                                                  request.form.get("client_secret"))
            with LOCK:
                grant = CODES.get(request.form.get("code", ""))
            if given != (client_id, client_secret):
                response = Response(json.dumps({"error": "invalid_client"}), status=401,
                                    content_type="application/json")
            elif grant is None:
                response = Response(json.dumps({"error": "invalid_grant"}), status=400,
                                    content_type="application/json")
            else:
                body = {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 300,
                        "id_token": id_token(issuer, client_id, grant)}
                response = Response(json.dumps(body), content_type="application/json",
                                    headers={"Cache-Control": "no-store"})
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)

    return serve


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret-file", required=True)
    args = parser.parse_args()
    with open(args.client_secret_file) as file:
        secret = file.read().strip()
    holder = {}
    server = make_server("127.0.0.1", 0, lambda e, s: holder["app"](e, s), threaded=True)
    issuer = f"http://127.0.0.1:{server.server_port}"
    holder["app"] = app(issuer, args.client_id, secret)
    print(f"listening on {issuer}", flush=True)
    try:
        server.serve_forever()
    finally:
        sys.stdout.flush()


if __name__ == "__main__":
    main()
