"""Reading a package's licence from its metadata the way a platform team would: the cases
tests/support/licences.py must judge (an expression with a way out of GPL ships, an unreadable
licence does not, a GPL classifier is seen beside an MIT expression)."""

from __future__ import annotations

import email.message

import pytest

from tests.support.licences import PERMISSIVE, category, classifiers_expression, declared, satisfies


def can_ship(licence_id: str) -> bool:
    """Permissive, or MPL-2.0: its copyleft is per file. It binds the MPL-covered files only
    (certifi's CA bundle and module), which ship unmodified with their source, and not the
    larger work that uses them (MPL-2.0 section 3.3), so the app's own code is untouched."""
    return category(licence_id) == PERMISSIVE or licence_id == "MPL-2.0"


def fake_metadata(**fields: str | list[str]) -> email.message.Message:
    message = email.message.Message()
    for field, values in fields.items():
        for value in values if isinstance(values, list) else [values]:
            message[field.replace("_", "-")] = value
    return message


@pytest.mark.parametrize(
    ("fields", "ships"),
    [
        ({"License_Expression": "GPL-3.0-or-later"}, False),
        ({"License_Expression": "LGPL-2.1-only"}, False),
        ({"License_Expression": "MIT OR GPL-2.0-only"}, True),  # the licensee picks MIT
        ({"License_Expression": "MIT AND (GPL-2.0-only OR AGPL-3.0-only)"}, False),
        ({"License_Expression": "mpl-2.0 and (Apache-2.0 or MIT)"}, True),
        ({"License_Expression": "Commercial"}, False),  # not known here: a person reads it
        ({"License": "GNU GPL v3"}, False),  # unrecognised text is not passed over
        ({"License": "GNU GPL v3", "Classifier": "License :: OSI Approved :: MIT License"}, False),
        ({"License": "UNKNOWN", "Classifier": "License :: OSI Approved :: MIT License"}, True),
        ({"Classifier": "License :: OSI Approved :: GNU General Public License v3 (GPLv3)"}, False),
        ({"Classifier": "License :: Other/Proprietary License"}, False),
        (
            {
                "License": "Copyright (c) 2020 X\n\nRedistribution and use in source and binary "
                "forms, with or without modification, are permitted provided that ..."
            },
            True,
        ),
    ],
)
def test_a_licence_is_read_from_the_metadata_as_a_platform_team_would(
    fields: dict[str, str], ships: bool
) -> None:
    licence = declared(fake_metadata(**fields))
    assert licence is not None
    assert satisfies(licence.expression, can_ship) is ships


def test_a_gpl_classifier_beside_an_mit_expression_is_seen() -> None:
    message = fake_metadata(
        License_Expression="MIT",
        Classifier="License :: OSI Approved :: GNU General Public License v2 (GPLv2)",
    )
    expression = classifiers_expression(message)
    assert expression is not None and not satisfies(expression, can_ship)
    assert declared(fake_metadata()) is None
