"""The drivers of this project's async database access, one for each database it runs on."""

ACCESS = "async"
DRIVERS = {"postgresql": "asyncpg", "sqlite": "aiosqlite"}
# libpq's URL parameters that asyncpg spells otherwise (`?sslmode=require` is `?ssl=require`).
RENAMED_PARAMETERS = {"sslmode": "ssl"}
