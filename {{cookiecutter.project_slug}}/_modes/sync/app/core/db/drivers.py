"""The drivers of this project's sync database access, one for each database it runs on."""

ACCESS = "sync"
DRIVERS = {"postgresql": "psycopg2", "sqlite": "pysqlite"}
# psycopg2 is libpq's own client: it takes libpq's URL parameters as they are.
RENAMED_PARAMETERS: dict[str, str] = {}
