"""docs/config.md is the generator's output, and every config key has a meaning."""

from __future__ import annotations

from pathlib import Path

from vtok.config.reference import COMMAND, missing_help, render

DOC = Path(__file__).resolve().parent.parent / "docs" / "config.md"


def test_config_reference_is_up_to_date():
    assert DOC.read_text() == render(), f"docs/config.md is stale; regenerate it with: {COMMAND}"


def test_every_config_key_has_a_meaning():
    missing = missing_help()
    assert not missing, (
        f"config keys without a meaning: {', '.join(missing)}; add a `#` comment on the field "
        "(or an entry in vtok.config.reference.FIELD_HELP), then run: " + COMMAND
    )
