"""The vendored browser libraries are the pinned, recorded ones (app/smart/vendor/README.md)."""

from __future__ import annotations

import hashlib
import re

from app.smart import STATIC_DIR

VENDOR = STATIC_DIR / "vendor"


def test_vendored_files_match_their_recorded_checksums() -> None:
    sums = dict(reversed(line.split()) for line in (VENDOR / "SHA256SUMS.txt").read_text().splitlines())
    files = sorted(p.name for p in VENDOR.glob("*.js"))
    assert sorted(sums) == files and len(files) == 4
    for name, digest in sums.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


def test_readme_records_version_and_licence_of_each_file() -> None:
    readme = (VENDOR / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| .+? \| ([0-9.]+) \| ([\w.-]+) \|", readme, flags=re.M)
    assert sorted(r[0] for r in rows) == sorted(p.name for p in VENDOR.glob("*.js"))
    for name, version, licence in rows:
        assert licence in ("Apache-2.0", "BSD-3-Clause")
        if name != "fhir-client.pure.min.js":  # the fhirclient bundle does not embed its version
            assert version in (VENDOR / name).read_text(encoding="utf-8"), name
    licences = {p.name for p in (VENDOR / "licenses").iterdir()}
    assert {"fhirclient-LICENSE.txt", "vega-LICENSE.txt", "vega-lite-LICENSE.txt",
            "vega-embed-LICENSE.txt"} <= licences
