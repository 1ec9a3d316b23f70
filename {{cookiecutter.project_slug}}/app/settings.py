"""The service's settings: the machinery's (`CoreSettings`, app/core/config.py) and your own.

This file is the project's: `cruft update` never changes it ([tool.cruft] in pyproject.toml),
while the template keeps the machinery's settings up to date. Add a setting as a typed field,
read from the environment variable of the same name in capitals, or from `.env`:
`payments_url: str = "https://payments.internal"` is set by `PAYMENTS_URL`.
"""

from app.core.config import CoreSettings


class Settings(CoreSettings):
    """Every setting of the service; `SettingsDep` gives it to a handler."""
