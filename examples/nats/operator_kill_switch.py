"""An operator pulling airlock's kill switch and releasing it over NATS, with nats-py (`pip install nats-py nkeys`).

    python3 examples/nats/operator_kill_switch.py NATS_URL SEED_FILE OPERATOR_ID REASON

SEED_FILE is the operator's nkey seed from `airlock nats-config --operator OPERATOR_ID`
(seeds/operator.OPERATOR_ID.nk). The broker lets this key publish `airlock.intake.operator.OPERATOR_ID.{halt,resume,
cancel,roll_back}`, ask on `airlock.query.operator.OPERATOR_ID` and `$SRV.>`, and read `airlock.result.operator.
OPERATOR_ID` and its private inbox. The example halts, reads the switch back from the live service (a halt counts
only once the service holds it), resumes and reads it back again, and prints what it saw as one JSON object, with the
endpoints the `airlock` micro service lists. `airlock halt --nats` and `airlock resume --nats` do the same.
tests/nats/nats_permissions.rs runs it.
"""

import asyncio
import json
import sys
import uuid

import nats
import nkeys


async def send(connection, actor, command, body):
    """Publishes one command through JetStream and returns airlock's answer to it."""
    answers = await connection.subscribe(f"airlock.result.operator.{actor}")
    try:
        ack = await connection.jetstream().publish(
            f"airlock.intake.operator.{actor}.{command}", json.dumps(body).encode()
        )
        while True:
            message = await answers.next_msg(timeout=30)
            if (message.headers or {}).get("Airlock-Intake-Sequence") == str(ack.seq):
                return json.loads(message.data)
    finally:
        await answers.unsubscribe()


async def ask(connection, actor, query):
    reply = await connection.request(f"airlock.query.operator.{actor}", json.dumps(query).encode(), timeout=10)
    return json.loads(reply.data)


async def main(url, seed_file, actor, reason):
    with open(seed_file) as file:
        seed = file.read().strip()
    public_key = nkeys.from_seed(seed.encode()).public_key.decode()
    connection = await nats.connect(servers=[url], nkeys_seed_str=seed, inbox_prefix=f"_INBOX.{public_key}")
    try:
        seen = {}
        for command in ("halt", "resume"):
            body = {"version": 1, "command_id": f"{command}-{uuid.uuid4().hex}", "reason": reason}
            seen[command] = await send(connection, actor, command, body)
            switch = await ask(connection, actor, {"query": "kill_switch"})
            seen[f"halted_after_{command}"] = switch.get("halted")
        info = json.loads((await connection.request("$SRV.INFO.airlock", b"", timeout=10)).data)
        seen["service"] = {"name": info.get("name"), "endpoints": [e.get("subject") for e in info.get("endpoints", [])]}
        print(json.dumps(seen))
    finally:
        await connection.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
