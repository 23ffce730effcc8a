#!/usr/bin/env python3
"""A subscriber in another language: reads idstream's whole JetStream stream with nats-py through
a durable pull consumer and validates every event against the published JSON Schemas.

It follows the subscriber contract in schemas/README.md:

- one durable pull consumer with a single filter subject, `idstream.events.>`;
- it reads half of the stream, disconnects, attaches to the same durable consumer again and
  checks that delivery resumes right after the last acknowledged position;
- every message: the envelope against schemas/envelope.v1.json, `data` against
  schemas/<type>.v<version>.json, the subject against the envelope
  (`idstream.events.<tenant or _>.<aggregate type>.<aggregate id>`), positions strictly increasing
  and each envelope id seen once;
- `--forbid TEXT` (repeatable): no message may contain TEXT (secrets the caller used).

Prints one JSON object (validated count, first and last position, counts per type, the position
delivery resumed at, errors) and exits 0 when every event is valid, 1 otherwise, 2 on bad usage
or when the stream cannot be read.

Needs `nats-py` and `jsonschema` (`.ci/test` installs both into target/py-venv).
"""

import argparse
import asyncio
import json
import pathlib
import sys

import jsonschema
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

FILTER = "idstream.events.>"
BATCH = 200


def load_schemas(directory):
    schemas = {}
    for path in sorted(pathlib.Path(directory).glob("*.json")):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        schemas[path.name] = jsonschema.Draft202012Validator(schema)
    if "envelope.v1.json" not in schemas:
        raise SystemExit(f"no envelope.v1.json in {directory}")
    return schemas


class Checker:
    def __init__(self, schemas, forbidden):
        self.schemas = schemas
        self.forbidden = [f.encode() for f in forbidden]
        self.errors = []
        self.types = {}
        self.ids = set()
        self.last = 0
        self.first = None
        self.count = 0

    def error(self, position, message):
        if len(self.errors) < 50:
            self.errors.append(f"position {position}: {message}")

    def check(self, position, subject, payload):
        self.count += 1
        if self.first is None:
            self.first = position
        if position <= self.last:
            self.error(position, f"delivered after position {self.last}")
        self.last = max(self.last, position)
        for secret in self.forbidden:
            if secret in payload:
                self.error(position, "contains a forbidden secret")
        try:
            envelope = json.loads(payload)
        except ValueError as e:
            self.error(position, f"not JSON: {e}")
            return
        for problem in self.schemas["envelope.v1.json"].iter_errors(envelope):
            self.error(position, f"envelope: {problem.message}")
        if not isinstance(envelope, dict):
            return
        event_type, version = envelope.get("type"), envelope.get("version")
        self.types[event_type] = self.types.get(event_type, 0) + 1
        name = f"{event_type}.v{version}.json"
        validator = self.schemas.get(name)
        if validator is None:
            self.error(position, f"no published schema {name}")
        else:
            for problem in validator.iter_errors(envelope.get("data")):
                path = "/".join(str(p) for p in problem.absolute_path)
                self.error(position, f"{name} at /{path}: {problem.message}")
        aggregate = envelope.get("aggregate") or {}
        expected = ".".join(
            [
                "idstream.events",
                envelope.get("tenant") or "_",
                str(aggregate.get("type")),
                str(aggregate.get("id")),
            ]
        )
        if subject != expected:
            self.error(position, f"subject {subject} but the envelope names {expected}")
        event_id = envelope.get("id")
        if event_id in self.ids:
            self.error(position, f"envelope id {event_id} seen twice")
        self.ids.add(event_id)


async def read(js, args, checker, until, stop_after=None):
    """Fetches from the durable consumer until position `until` (or `stop_after` messages),
    acknowledging each message after it is checked. Returns the first position delivered."""
    sub = await js.pull_subscribe(
        FILTER,
        durable=args.durable,
        stream=args.stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL
        ),
    )
    first = None
    taken = 0
    while checker.last < until and (stop_after is None or taken < stop_after):
        want = BATCH if stop_after is None else min(BATCH, stop_after - taken)
        try:
            messages = await sub.fetch(batch=want, timeout=args.timeout)
        except nats.errors.TimeoutError:
            raise SystemExit(
                f"no message within {args.timeout}s after position {checker.last}; "
                f"the stream ends at {until}"
            )
        for message in messages:
            position = message.metadata.sequence.stream
            if first is None:
                first = position
            checker.check(position, message.subject, message.data)
            await message.ack_sync()
            taken += 1
    await sub.unsubscribe()
    return first


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--stream", default="IDSTREAM")
    parser.add_argument("--schemas", required=True, help="the directory of the JSON Schemas")
    parser.add_argument("--durable", default="python-validator")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--forbid", action="append", default=[])
    args = parser.parse_args()

    checker = Checker(load_schemas(args.schemas), args.forbid)

    nc = await nats.connect(args.nats_url)
    js = nc.jetstream()
    info = await js.stream_info(args.stream)
    last = info.state.last_seq
    if last == 0:
        raise SystemExit("the stream is empty")
    # First half, then disconnect as a crashed subscriber would.
    half = max(1, last // 2)
    await read(js, args, checker, last, stop_after=half)
    acknowledged = checker.last
    await nc.close()

    # Attach to the same durable consumer: delivery resumes after the acknowledged position.
    nc = await nats.connect(args.nats_url)
    js = nc.jetstream()
    resumed_at = None
    if checker.last < last:
        resumed_at = await read(js, args, checker, last)
        if resumed_at != acknowledged + 1:
            checker.error(
                resumed_at,
                f"resumed at {resumed_at}, not right after the acknowledged {acknowledged}",
            )
    await nc.close()

    summary = {
        "validated": checker.count,
        "first": checker.first,
        "last": checker.last,
        "stream_last": last,
        "acknowledged_before_restart": acknowledged,
        "resumed_at": resumed_at,
        "types": checker.types,
        "errors": checker.errors,
    }
    print(json.dumps(summary, sort_keys=True))
    return 0 if not checker.errors and checker.count > 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except SystemExit as e:
        if isinstance(e.code, str):
            print(json.dumps({"errors": [e.code]}))
            sys.exit(2)
        raise
