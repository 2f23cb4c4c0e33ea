"""Signs a user in at canaille through airlock's owners' page, as a browser would, and submits the one-time code on
the form airlock shows after the sign-in: GET airlock's /oidc/start, canaille's login form, password and
authenticator code, the redirect back to airlock's /oidc/callback, then the code on airlock's verification form.
Run in canaille's virtual environment (httpx, otpauth).

    oidc_sign_in.py --start URL --user NAME --password P --totp-secret S --code CODE [--step-up TEXT]

Prints one JSON object: `callback` (the status of airlock's page after the sign-in, and its text when it is not the
form), `verify` (the status and text of the page the code was submitted to), and `step_up` (the signed sign-in airlock
put on the form, so that a test can replay it elsewhere and look for it in logs). With `--step-up TEXT`, the form is
submitted with TEXT instead.
"""

import argparse
import html
import json
import re
import sys

import httpx
import otpauth


def text_of(page):
    body = re.sub(r"<style>.*?</style>|<[^>]+>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", body)).strip()


def hidden_fields(page):
    fields = {}
    for tag in re.findall(r"<input[^>]*>", page):
        kind = re.search(r'type="([^"]*)"', tag)
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if kind and kind.group(1) == "hidden" and name:
            fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
    return fields


def main():
    parser = argparse.ArgumentParser()
    for flag in ["--start", "--user", "--password", "--totp-secret", "--code"]:
        parser.add_argument(flag, required=True)
    parser.add_argument("--step-up")
    args = parser.parse_args()
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        login = browser.get(args.start)
        assert "/login" in str(login.url), f"not at the provider's login: {login.url} {login.status_code}"
        password = browser.post(str(login.url), data={"login": args.user})
        assert "/auth/password" in str(password.url), f"no password step: {password.url}"
        otp = browser.post(str(password.url), data={"password": args.password})
        assert "/auth/otp" in str(otp.url), f"no authenticator step: {otp.url}"
        totp = otpauth.TOTP(args.totp_secret.encode("utf-8"))
        back = browser.post(str(otp.url), data={"otp": totp.string_code(totp.generate())})
        result = {"callback": {"status": back.status_code, "url_path": back.url.path}}
        fields = hidden_fields(back.text)
        if "step_up" not in fields:
            result["callback"]["text"] = text_of(back.text)
            print(json.dumps(result))
            return
        result["step_up"] = fields["step_up"]
        if args.step_up is not None:
            fields["step_up"] = args.step_up
        action = back.url.copy_with(path="/verify", query=None)
        verified = browser.post(str(action), data={**fields, "code": args.code})
        result["verify"] = {"status": verified.status_code, "text": text_of(verified.text)}
        print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
