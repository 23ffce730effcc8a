"""Runs scim2-tester (https://pypi.org/project/scim2-tester/), a SCIM 2.0 conformance checker
maintained by the python-scim project, against a running idstream.

Usage: scim_conformance.py <base URL of /scim/v2> (the API key in IDSTREAM_SCIM_KEY)

Prints one JSON object per check (status, title, resource type, reason) and exits 0; the Rust
test that runs it decides what must hold.
"""

import json
import os
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server


def main() -> int:
    base = sys.argv[1].rstrip("/")
    key = os.environ["IDSTREAM_SCIM_KEY"]
    http = Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    client = SyncSCIMClient(http)
    results = check_server(client)
    for result in results:
        print(
            json.dumps(
                {
                    "status": result.status.name,
                    "title": result.title,
                    "resource_type": result.resource_type,
                    "reason": result.reason,
                    "tags": sorted(result.tags or []),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
