"""Settings for tests: from the values given, never from the shell's environment or `.env`."""

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from app.settings import Settings


class IsolatedSettings(Settings):
    # The loop guard judges every stall in the tests (tests/loop_guard.py): the production
    # monitor's warnings would only repeat it, about the tests' own code too. Its metrics stay.
    stall_monitor_enabled: bool = False
    # FastAPI's TestClient sends `Host: testserver` unless told otherwise.
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "[::1]", "testserver"]
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)
