"""AzureWebJobsStorage's AccountKey, checked as the storage SDK reads the connection string and
decodes the key it signs with: refused exactly when the SDK could not sign with it, with the
decoder's reason.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.storage.queue import (
    AccountSasPermissions,
    QueueClient,
    ResourceTypes,
    generate_account_sas,
)

from acr_webhook.config import ConfigurationError, queue_settings

# --- config._check_account_key: decoded as the storage SDK decodes it ---------------------------


# Azurite's well-known development key (docs: "Use the Azurite emulator"): no secret.
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _sdk_refusal(key: str) -> ValueError | None:
    """What the storage SDK says of ``key`` when it signs with it (generate_account_sas signs
    as each request is signed), or None when it signs."""
    try:
        generate_account_sas(
            "devstoreaccount1",
            key,
            ResourceTypes(service=True),
            AccountSasPermissions(read=True),
            datetime(2030, 1, 1, tzinfo=UTC),
        )
    except ValueError as error:
        return error
    return None


@pytest.mark.parametrize(
    "key",
    [
        DEV_KEY,
        DEV_KEY[:40] + DEV_KEY[41:],  # a character lost in the middle: the padding stays
        DEV_KEY[:-2],  # the padding lost
        DEV_KEY[:-1],
        DEV_KEY + "a",  # after the padding: the SDK's decoder ignores it
        DEV_KEY[:40] + " " + DEV_KEY[40:],  # pasted with a space, a line break, a no-break
        DEV_KEY[:40] + "\n" + DEV_KEY[40:],  # space: not base64, so the decoder drops them
        DEV_KEY[:40] + "\u00a0" + DEV_KEY[40:],
        DEV_KEY[:40] + "é" + DEV_KEY[41:],
        "=",
    ],
)
@pytest.mark.parametrize("name", ["AccountKey", "accountkey", "ACCOUNTKEY"])
def test_an_account_key_is_refused_exactly_when_the_storage_sdk_cannot_sign_with_it(
    key: str, name: str
) -> None:
    """_check_account_key: "decoded as the storage SDK decodes it to sign each request ...
    Anything else the SDK refuses, it refuses itself". So a key the SDK signs with is never a
    setting error, and one it cannot decode is, giving the decoder's reason. Kills: the key
    decoded with validate=True, or as str (both refuse the pasted space/no-break space, which
    the SDK drops), and the name split at the last "=" (a padded key then goes unchecked)."""
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;{name}={key};"
        "QueueEndpoint=http://127.0.0.1:1/devstoreaccount1;"
    )
    refusal = _sdk_refusal(key)
    if refusal is None:
        settings = queue_settings({"AzureWebJobsStorage": connection})
        assert settings is not None and settings.connection_string == connection
        return
    with pytest.raises(ConfigurationError) as raised:
        queue_settings({"AzureWebJobsStorage": connection})
    message = str(raised.value)
    assert message.startswith("AzureWebJobsStorage: AccountKey")
    assert str(refusal) in message  # why, as the decoder says it
    assert key not in message or len(key) < 2


@pytest.mark.parametrize(
    ("keys", "refused"),
    [
        (f"AccountKey=not-base64;AccountKey={DEV_KEY}", False),  # the last one signs
        (f"AccountKey={DEV_KEY};accountkey={DEV_KEY[:-1]}", True),
        (f"UseDevelopmentStorage=true;AccountKey={DEV_KEY[:-1]}", False),  # Azurite's key signs
    ],
)
def test_only_the_account_key_the_storage_sdk_signs_with_is_checked(
    keys: str, refused: bool
) -> None:
    """The SDK reads a connection string into a dict (the last of a repeated name wins) and,
    with UseDevelopmentStorage=true, signs with Azurite's key whatever AccountKey says."""
    connection = f"{keys};QueueEndpoint=http://127.0.0.1:1/devstoreaccount1"
    if not refused:
        assert queue_settings({"AzureWebJobsStorage": connection}) is not None
        return
    with pytest.raises(ConfigurationError, match="AzureWebJobsStorage: AccountKey"):
        queue_settings({"AzureWebJobsStorage": connection})


# --- config._check_account_key: the key the storage SDK signs with -----------------------------


QUEUE_ENDPOINT = "QueueEndpoint=http://127.0.0.1:1/devstoreaccount1"


@pytest.mark.parametrize(
    "keys",
    [
        f"UseDevelopmentStorage=True;AccountKey={DEV_KEY[:-1]}",  # "true" only, as the SDK reads it
        f"UseDevelopmentStorage=false;AccountKey={DEV_KEY[:-1]}",
        f"UseDevelopmentStorage=;AccountKey={DEV_KEY[:-1]}",
        f"AccountKey={DEV_KEY}; AccountKey={DEV_KEY[:-1]}",  # " ACCOUNTKEY" is another name
        f"AccountKey={DEV_KEY[:-1]};AccountKey ={DEV_KEY}",  # so is "ACCOUNTKEY "
    ],
)
def test_the_key_checked_is_the_one_the_storage_sdk_signs_with(keys: str) -> None:
    """config._check_account_key: "As the SDK's parse_connection_str reads it" (names upper-cased,
    nothing stripped; the development key only for UseDevelopmentStorage=true). Whether the
    setting is refused follows whether the SDK's client can sign with the key it holds. Kills:
    the flag compared in any case or merely present, and names stripped before comparing."""
    connection = f"AccountName=devstoreaccount1;{keys};{QUEUE_ENDPOINT}"
    signing_key = QueueClient.from_connection_string(connection, "q").credential.account_key
    refusal = _sdk_refusal(signing_key)
    if refusal is None:
        assert queue_settings({"AzureWebJobsStorage": connection}) is not None
        return
    with pytest.raises(ConfigurationError) as raised:
        queue_settings({"AzureWebJobsStorage": connection})
    assert str(raised.value).startswith("AzureWebJobsStorage: AccountKey")
    assert str(refusal) in str(raised.value)
