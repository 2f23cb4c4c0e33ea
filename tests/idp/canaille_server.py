"""Runs canaille (a real identity provider from PyPI, with SCIM 2.0 and OpenID Connect) on a loopback port of its
own choosing, in memory, for airlock's tests. Configured as the pytest-iam package configures it for tests.

    canaille_server.py --users users.json

Prints one line, `listening on http://127.0.0.1:PORT token TOKEN oidc-client ID SECRET`, once it serves: TOKEN is an
OAuth bearer token for the SCIM API (a client-credentials token of a client made for airlock); ID and SECRET are those
of an OpenID Connect client for airlock's owners' page (authorization code, trusted: no consent page). `users.json` is
a list of {"user_name", "emails", "phone_numbers", "password", "totp_secret", "groups"}; each user's SCIM id is printed as
`user USER_NAME ID`. Signing in takes the password and then an authenticator code (canaille's TOTP over the
`totp_secret` text), and the ID token's `sub` is the user's SCIM id, as a company would map it for airlock; with the
scope `groups`, its `groups` claim lists the user's groups (made as named, for the console's roles).
Stops on SIGTERM or when its parent closes its stdin.

`POST /airlock-test/redirect-uri` with `{"uri"}` sets the OpenID Connect client's one redirect URI (airlock's page
listens on a port it picks, known only once it serves).

`POST /airlock-test/check-password` with `{"user_name", "password"}` answers `{"valid": true|false}`: canaille's own
password check (`Backend.check_user_password`), so that a test can tell which password canaille holds (SCIM never
returns one).
"""

import argparse
import datetime
import json
import os
import secrets
import socketserver
import sys
import threading
import uuid
import wsgiref.simple_server

os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"

from canaille import create_app  # noqa: E402
from canaille.app import models  # noqa: E402
from canaille.backends import Backend  # noqa: E402
from joserfc.jwk import JWKRegistry  # noqa: E402


class Threaded(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    """One thread per connection: a browser opens connections it sends nothing on (preconnects), which would hold a
    one-at-a-time server, and airlock's own calls behind it, until they time out."""

    daemon_threads = True


class Quiet(wsgiref.simple_server.WSGIRequestHandler):
    def log_request(self, code="-", size="-"):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", required=True)
    args = parser.parse_args()

    httpd = wsgiref.simple_server.make_server("127.0.0.1", 0, None, server_class=Threaded, handler_class=Quiet)
    port = httpd.server_address[1]
    jwk = JWKRegistry.generate_key("RSA", 2048)
    jwk.ensure_kid()
    config = {
        "TESTING": True,
        "ENV_FILE": None,
        "SECRET_KEY": secrets.token_hex(32),
        "WTF_CSRF_ENABLED": False,
        "PREFERRED_URL_SCHEME": "http",
        "SERVER_NAME": f"127.0.0.1:{port}",
        "CANAILLE": {
            "DATABASE": "memory",
            "JAVASCRIPT": False,
            "ACL": {"DEFAULT": {"PERMISSIONS": ["use_oidc", "manage_oidc"]}},
            "AUTHENTICATION_FACTORS": ["password", "otp"],
            "OTP_METHOD": "TOTP",
            "LOGGING": {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {"null": {"class": "logging.NullHandler"}},
                "loggers": {"canaille": {"level": "WARNING", "handlers": ["null"]}},
            },
        },
        "CANAILLE_OIDC": {
            "ACTIVE_JWKS": [jwk.as_dict(private=True)],
            "USERINFO_MAPPING": {"SUB": "{{ user.id }}"},
        },
        "CANAILLE_SCIM": {"ENABLE_SERVER": True},
    }
    app = create_app(config=config, env_file=None, env_prefix="AIRLOCK_TEST_CANAILLE_")

    def with_check(environ, start_response):
        path = environ.get("PATH_INFO")
        if not path.startswith("/airlock-test/") or environ.get("REQUEST_METHOD") != "POST":
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        asked = json.loads(environ["wsgi.input"].read(length))
        with app.app_context():
            if path == "/airlock-test/redirect-uri":
                owners = Backend.instance.get(models.Client, client_id="airlock-owners")
                owners.redirect_uris = [asked["uri"]]
                Backend.instance.save(owners)
                answer = {"redirect_uris": owners.redirect_uris}
            else:
                user = Backend.instance.get(models.User, user_name=asked["user_name"])
                valid = user is not None and Backend.instance.check_user_password(user, asked["password"])[0]
                answer = {"valid": bool(valid)}
        body = json.dumps(answer).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    httpd.set_app(with_check)
    backend = Backend.instance
    token_text = secrets.token_urlsafe(32)
    lines = []
    with app.app_context():
        now = datetime.datetime.now(datetime.timezone.utc)
        client = models.Client(
            client_id="airlock",
            client_secret=secrets.token_urlsafe(32),
            client_name="airlock",
            client_id_issued_at=now,
            grant_types=["client_credentials"],
            response_types=["token"],
            redirect_uris=[f"http://127.0.0.1:{port}/unused"],
            scope=["openid"],
            token_endpoint_auth_method="client_secret_basic",
        )
        backend.save(client)
        token = models.Token(
            token_id=str(uuid.uuid4()),
            access_token=token_text,
            client=client,
            type="access_token",
            scope=["openid"],
            issue_date=now,
            lifetime=24 * 3600,
            audience=[client],
        )
        backend.save(token)
        oidc_secret = secrets.token_urlsafe(32)
        owners = models.Client(
            client_id="airlock-owners",
            client_secret=oidc_secret,
            client_name="airlock owners' page",
            client_uri=f"http://127.0.0.1:{port}",
            client_id_issued_at=now,
            grant_types=["authorization_code"],
            response_types=["code"],
            redirect_uris=["http://127.0.0.1/not-yet"],
            scope=["openid", "groups"],
            token_endpoint_auth_method="client_secret_basic",
        )
        backend.save(owners)
        # As canaille's own client registration does: the client is the audience of its ID tokens.
        owners.audience = [owners]
        backend.save(owners)
        with open(args.users) as file:
            for record in json.load(file):
                user = models.User(
                    user_name=record["user_name"],
                    emails=record.get("emails") or None,
                    phone_numbers=record.get("phone_numbers") or None,
                )
                if record.get("password"):
                    user.password = record["password"]
                if record.get("totp_secret"):
                    user.secret_token = record["totp_secret"]
                    user.last_otp_login = now
                backend.save(user)
                lines.append(f"user {user.user_name} {user.id}")
                for name in record.get("groups") or []:
                    group = backend.get(models.Group, display_name=name)
                    if group is None:
                        group = models.Group(display_name=name, members=[user])
                    else:
                        group.members = [*group.members, user]
                    backend.save(group)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    print(f"listening on http://127.0.0.1:{port} token {token_text} oidc-client airlock-owners {oidc_secret}", flush=True)
    for line in lines:
        print(line, flush=True)
    sys.stdin.read()
    httpd.shutdown()


if __name__ == "__main__":
    main()
