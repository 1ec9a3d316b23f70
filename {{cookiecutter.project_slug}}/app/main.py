"""The application a server imports: `granian --interface asgi app.main:app` (scripts/serve.sh).

Its settings come from the environment and `.env`, read when this module is imported. Tests
never import it: they build their own app from their own settings with `create_app`.
"""

from app.factory import create_app

app = create_app()
