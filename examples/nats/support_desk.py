"""A support desk opening a recovery request over NATS with a non-Rust client (`pip install nats-py nkeys`).

    python3 examples/nats/support_desk.py NATS_URL SEED_FILE ACTOR_ID ACCOUNT

SEED_FILE is the desk's nkey seed from `airlock nats-config` (seeds/intake.ACTOR_ID.nk). The broker lets this key
publish only `airlock.intake.intake.ACTOR_ID.request_recovery` and `airlock.query.intake.ACTOR_ID`, and read only
`airlock.result.intake.ACTOR_ID` and its private inbox, `_INBOX.<its public key>`, which the client must use. It
prints airlock's answer and the case's public status as one JSON object. tests/nats/nats_permissions.rs runs it.
"""

import asyncio
import json
import sys
import uuid

import nats
import nkeys


async def main(url, seed_file, actor, account):
    with open(seed_file) as file:
        seed = file.read().strip()
    public_key = nkeys.from_seed(seed.encode()).public_key.decode()
    connection = await nats.connect(servers=[url], nkeys_seed_str=seed, inbox_prefix=f"_INBOX.{public_key}")
    try:
        # Listen for airlock's answer before sending, so it cannot be missed.
        answers = await connection.subscribe(f"airlock.result.intake.{actor}")
        request = {
            "version": 1,
            "command_id": f"desk-{uuid.uuid4().hex}",
            "account_id": account,
            "action": {"type": "reset_password"},
            "summary": "Caller says they are locked out after a phone change.",
            "signals": {"claims_urgency": False},
        }
        jetstream = connection.jetstream()
        ack = await jetstream.publish(f"airlock.intake.intake.{actor}.request_recovery", json.dumps(request).encode())
        while True:
            message = await answers.next_msg(timeout=30)
            if (message.headers or {}).get("Airlock-Intake-Sequence") == str(ack.seq):
                answer = json.loads(message.data)
                break
        status = None
        if answer.get("case_id"):
            query = json.dumps({"case_id": answer["case_id"]}).encode()
            status = json.loads((await connection.request(f"airlock.query.intake.{actor}", query, timeout=10)).data)
        print(json.dumps({"answer": answer, "status": status}))
    finally:
        await connection.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
