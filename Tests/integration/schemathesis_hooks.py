"""Schemathesis hooks for test_openapi.py: how to send an `application/x-ndjson` body (one
JSON value a line), which schemathesis does not know by itself."""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return value
    entries = value if isinstance(value, list) else [value]
    return "".join(json.dumps(entry) + "\n" for entry in entries).encode()
