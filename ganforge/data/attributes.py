"""Attributes of training samples (a metadata column, or one derived from it) for balanced
sampling and for the bias audit."""

from __future__ import annotations

import re
from typing import Any

from ganforge.errors import DataError

#: Unicode skin-tone modifiers (Fitzpatrick types) as they appear in emoji ids
SKIN_TONES = {"1f3fb": "light", "1f3fc": "medium-light", "1f3fd": "medium",
              "1f3fe": "medium-dark", "1f3ff": "dark"}
NO_TONE = "none"
#: a skin tone named in a caption ("..., medium-dark skin tone"), with its separator
TONE_PHRASE = re.compile(r"[,:;]?\s*\b(medium-light|medium-dark|medium|light|dark) skin tone")
DERIVED = ("skin-tone",)
#: the ragan sampling option ``skin_tones``: a start as retrieved, or spread over the
#: retrieved image's skin-tone variants when the prompt names no tone
SKIN_TONE_CHOICES = ("as-named", "varied")


def skin_tone(fields: dict[str, Any]) -> str:
    """The skin tone of an emoji row: from the modifier in its ``id`` (or its caption), or
    'none' for the default (yellow) or tone-less emoji; 'mixed' for several tones."""
    ident = str(fields.get("id", "")).lower()
    found = {name for code, name in SKIN_TONES.items() if code in ident.split("-")}
    if not found:
        found = set(TONE_PHRASE.findall(str(fields.get("caption", "")).lower()))
    if not found:
        return NO_TONE
    return found.pop() if len(found) == 1 else "mixed"


def attribute_of(fields: dict[str, Any], name: str) -> str:
    """The value of attribute ``name`` for a sample's metadata ``fields``: a column of the
    captions file, or a derived attribute ('skin-tone')."""
    if name == "skin-tone":
        return skin_tone(fields)
    if name not in fields:
        raise DataError(f"attribute {name!r} is not a column of the captions file; columns: "
                        f"{', '.join(sorted(fields))}; derived: {', '.join(DERIVED)}")
    return str(fields[name])
