#!/usr/bin/env bash
# The identity providers the directory tests run against, each in a virtual environment of its own (their
# dependencies conflict: canaille 0.3.6 needs scim2-models 0.8, scim2-server 0.8 needs 0.12), created when missing:
#   $AIRLOCK_IDP_VENVS/scim2-server  scim2-server (an in-memory SCIM 2.0 server)
#   $AIRLOCK_IDP_VENVS/canaille      canaille (an identity provider with SCIM 2.0 and OpenID Connect)
# AIRLOCK_IDP_VENVS defaults to ~/.cache/airlock/idp, outside any clone, so a fresh clone reuses them.
set -euo pipefail
root=${AIRLOCK_IDP_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock/idp}

# A venv is made again when its requirements changed (they are kept in it) or its check fails.
need_venv() {
    local name=$1 check=$2
    shift 2
    if [ "$(cat "$root/$name/airlock-requirements" 2>/dev/null)" != "$*" ] \
        || ! "$root/$name/bin/python" -c "$check" >/dev/null 2>&1; then
        echo "== installing $name in $root/$name (PyPI: $*)"
        rm -rf "${root:?}/$name"
        python3 -m venv "$root/$name"
        "$root/$name/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
        "$root/$name/bin/python" -c "$check" || { echo "$name could not be installed" >&2; exit 1; }
        echo "$*" > "$root/$name/airlock-requirements"
    fi
}
need_venv scim2-server "import scim2_server" "scim2-server==0.8.3"
# canaille 0.3.6 calls model_dump(attributes=...), which scim2-models dropped after 0.8. Its otp extra lets a
# test user sign in with an authenticator code (the OpenID Connect step-up, issue 18 item 6).
need_venv canaille "import canaille, scim2_models, joserfc, otpauth" \
    "canaille[oidc,scim,otp]==0.3.6" "scim2-models==0.8.2" "scim2-client<0.8"
echo "== identity providers in $root: scim2-server $(cat "$root/scim2-server/airlock-requirements"), canaille $(cat "$root/canaille/airlock-requirements")"
