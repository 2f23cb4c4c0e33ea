#!/usr/bin/env bash
# A support desk's session against airlock's HTTP intake, with nothing but curl.
#
#   AIRLOCK_URL=http://127.0.0.1:8080 AIRLOCK_KEY=ak_... ./examples/http/curl_session.sh ACCOUNT
#
# The key comes from `airlock api-key create --requester ID` (shown once). The desk can open a request and read its
# public status; nothing else. tests/integrations/http_intake.rs runs this script.
set -euo pipefail
: "${AIRLOCK_URL:?set AIRLOCK_URL, e.g. http://127.0.0.1:8080}"
: "${AIRLOCK_KEY:?set AIRLOCK_KEY to the API key of the desk}"
account=${1:?usage: curl_session.sh ACCOUNT}
auth="Authorization: Bearer $AIRLOCK_KEY"

echo "== open a request (the same command_id again would return the same case)"
answer=$(curl --silent --show-error --fail-with-body -H "$auth" -H 'Content-Type: application/json' \
    --data "{\"version\": 1, \"command_id\": \"desk-$$-$RANDOM\", \"account_id\": \"$account\",
             \"action\": {\"type\": \"reset_password\"}, \"summary\": \"Caller locked out after a phone change.\",
             \"signals\": {}}" \
    "$AIRLOCK_URL/v1/recovery-requests")
echo "$answer"
case_id=$(printf '%s' "$answer" | python3 -c 'import json, sys; print(json.load(sys.stdin)["case_id"])')

echo "== its public status"
curl --silent --show-error --fail-with-body -H "$auth" "$AIRLOCK_URL/v1/recovery-requests/$case_id"
echo

echo "== without a key: refused"
curl --silent --output /dev/null --write-out '%{http_code}\n' "$AIRLOCK_URL/v1/recovery-requests/$case_id"
