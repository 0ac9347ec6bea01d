"""Which licenses let dcode learn from (and be measured on) a package's sources: permissive ones
only. A package's license comes from its METADATA (installed distributions) or LICENSE file."""

from __future__ import annotations

import email.parser
import re
from collections.abc import Sequence

# --------------------------------------------------------------------------------------- licenses

# Substrings (lower-case) of license names/expressions/classifiers -> canonical permissive name.
PERMISSIVE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("apache", "Apache-2.0"),
    ("mit-0", "MIT-0"),
    ("mit", "MIT"),
    ("expat", "MIT"),
    ("bsd", "BSD"),
    ("python software foundation", "PSF-2.0"),
    ("psf", "PSF-2.0"),
    ("isc", "ISC"),
    ("zlib", "Zlib"),
    ("unlicense", "Unlicense"),
    ("public domain", "Public-Domain"),
    ("cc0", "CC0-1.0"),
    ("0bsd", "0BSD"),
    ("hpnd", "HPND"),
    ("historical permission notice", "HPND"),
    ("zope public license", "ZPL-2.1"),
    ("upl", "UPL-1.0"),
)
# Copyleft or otherwise restrictive licenses: a package carrying one only is not used.
RESTRICTIVE_PATTERNS: tuple[str, ...] = ("gpl", "gnu", "mpl", "mozilla", "eupl", "cddl", "epl", "sspl", "proprietary", "commercial")


def _canonical_permissive(text: str) -> str | None:
    low = text.lower()
    for pattern, name in PERMISSIVE_PATTERNS:
        if re.search(rf"(?<![a-z]){re.escape(pattern)}", low):
            return name
    return None


def _is_restrictive(text: str) -> bool:
    low = text.lower()
    return any(re.search(rf"(?<![a-z]){p}", low) for p in RESTRICTIVE_PATTERNS)


def classify_license(candidates: Sequence[str]) -> str | None:
    """The permissive license these metadata strings declare, or None.

    `candidates` are License-Expression, the first line of License, and the license classifiers.
    An SPDX expression with OR is accepted when one alternative is permissive (we may choose it);
    otherwise any restrictive license (GPL, MPL, ...) anywhere disqualifies the package.
    """
    for text in candidates:
        if " or " in text.lower():
            for alternative in re.split(r"\s+or\s+", text, flags=re.IGNORECASE):
                name = _canonical_permissive(alternative.strip("() "))
                if name and not _is_restrictive(alternative):
                    return name
    if any(_is_restrictive(text) for text in candidates):
        return None
    for text in candidates:
        name = _canonical_permissive(text)
        if name:
            return name
    return None


def license_from_metadata(metadata_text: str) -> str | None:
    msg = email.parser.Parser().parsestr(metadata_text, headersonly=True)
    candidates: list[str] = []
    if msg.get("License-Expression"):
        candidates.append(str(msg["License-Expression"]))
    license_field = str(msg.get("License") or "").strip()
    if license_field and license_field.upper() != "UNKNOWN":
        # Some packages paste the whole license text here; its first line names it.
        candidates.append(license_field.splitlines()[0][:200])
    for classifier in msg.get_all("Classifier") or []:
        if classifier.startswith("License ::") and classifier.strip() != "License :: OSI Approved":
            candidates.append(classifier.split("::", 1)[1])
    return classify_license(candidates)


def license_from_text(text: str) -> str | None:
    """License of a LICENSE/COPYING file, judged by its opening lines."""
    head = "\n".join(text.splitlines()[:30])
    if "permission is hereby granted, free of charge" in head.lower():
        return "MIT"
    if "redistribution and use in source and binary forms" in head.lower():
        return "BSD"
    return classify_license([head])
