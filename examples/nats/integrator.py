"""A company system (a SIEM, a ticketing back end) reading airlock's case and alert events over NATS with a non-Rust
client (`pip install nats-py nkeys`).

    python3 examples/nats/integrator.py NATS_URL SEED_FILE INTEGRATOR_ID COUNT

SEED_FILE is the integrator's nkey seed from `airlock nats-config --integrator INTEGRATOR_ID`
(seeds/integrator.INTEGRATOR_ID.nk). The broker lets this key read the stream AIRLOCK_NOTIFY through its own durable
consumer, `integrator-INTEGRATOR_ID`, which `airlock serve --integrator INTEGRATOR_ID` creates, and nothing else: it
binds to that consumer (it may not create one, nor list streams) and uses its private inbox, `_INBOX.<its public
key>`. It reads until it has COUNT events (or 30 s pass without a new
one), acknowledges each, and prints them as one JSON array of {subject, id, type, document}: `id` is the Nats-Msg-Id,
the same as the webhook-id of the event, for deduplication. tests/nats/nats_permissions.rs runs it.
"""

import asyncio
import json
import sys

import nats
import nkeys
from nats.errors import TimeoutError as NatsTimeout


async def main(url, seed_file, integrator, count):
    with open(seed_file) as file:
        seed = file.read().strip()
    public_key = nkeys.from_seed(seed.encode()).public_key.decode()
    connection = await nats.connect(servers=[url], nkeys_seed_str=seed, inbox_prefix=f"_INBOX.{public_key}")
    events = []
    try:
        jetstream = connection.jetstream()
        # The consumer exists (airlock serve --integrator INTEGRATOR_ID creates it); this key may not create one.
        subscription = await jetstream.pull_subscribe_bind(durable=f"integrator-{integrator}", stream="AIRLOCK_NOTIFY")
        while len(events) < int(count):
            try:
                messages = await subscription.fetch(batch=50, timeout=30)
            except NatsTimeout:
                break
            for message in messages:
                document = json.loads(message.data)
                events.append({
                    "subject": message.subject,
                    "id": (message.headers or {}).get("Nats-Msg-Id"),
                    "type": document["type"],
                    "document": document,
                })
                await message.ack()
        print(json.dumps(events))
    finally:
        await connection.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
