"""Settings: a bad value is named clearly, and a secret in it is never shown."""

import pytest
from pydantic import ValidationError

from tests.settings import IsolatedSettings


def test_a_mistyped_url_never_shows_its_password() -> None:
    with pytest.raises(ValidationError) as caught:
        IsolatedSettings(database_url="postgersql://app:s3cret-pass@db/app")
    message = str(caught.value)
    assert "database_url" in message
    assert "unsupported database 'postgersql'" in message
    assert "s3cret-pass" not in message
