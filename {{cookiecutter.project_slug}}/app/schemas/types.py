"""Field types for text that goes into the database.

PostgreSQL rejects NUL characters in text, and no database can store a lone UTF-16 surrogate
(JSON allows "\\ud800"): such input is refused with 422 here instead of failing in the driver.
"""

from pydantic import AfterValidator


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


# After any length limits, in an Annotated field: `Annotated[str, Field(...), Storable]`.
Storable = AfterValidator(_storable)

# The largest value of a PostgreSQL `integer` column (and of the ids it stores).
MAX_INT32 = 2**31 - 1
