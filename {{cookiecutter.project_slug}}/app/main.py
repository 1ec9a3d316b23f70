"""The application a server imports: `granian --interface asgi app.main:app` (scripts/serve.sh).

Its settings come from the environment and `.env`, read when this module is imported. Tests
never import it: they build their own app from their own settings with `create_app`.
"""

import gc
import sys

from app.factory import create_app

# granian's I/O runs in a thread of its own, which takes the GIL for each event of a request.
# At Python's default switch interval (5 ms), a loop busy in Python code (a streamed export's
# CSV) makes every such event wait: /health's p99 was 51 ms while two exports streamed, 10 ms
# at 0.5 ms, with item reads a second unchanged (the template's bench/export.py).
sys.setswitchinterval(0.0005)

app = create_app()

# What was imported and built so far lives as long as the process. A full garbage collection
# walks every object the collector tracks: 120,000 of them here, 76 ms holding the event loop,
# every few seconds under load. Frozen, they are left out, and a full collection walks only what
# requests made: 3 to 6 ms.
gc.collect()
gc.freeze()
