"""Code comments point into docs/design.md by anchor: every anchor they name exists there, and the spec of the
reference (not in this repository) is never cited."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.glob("vtok/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py")])


def anchors() -> set[str]:
    return set(re.findall(r'<a id="([a-z0-9-]+)"></a>', (ROOT / "docs" / "design.md").read_text()))


def test_every_design_anchor_named_in_the_code_exists() -> None:
    known = anchors()
    assert {"layers", "training-flow", "inference-flow", "reading-files"} <= known
    missing = []
    for path in SOURCES:
        for match in re.finditer(r"design\.md#([a-z0-9-]+)((?:,? #[a-z0-9-]+)*)", path.read_text()):
            names = [match[1], *re.findall(r"#([a-z0-9-]+)", match[2])]
            missing += [f"{path.relative_to(ROOT)}: #{name}" for name in names if name not in known]
    assert not missing, "anchors missing from docs/design.md:\n" + "\n".join(missing)


def test_no_comment_cites_the_reference_spec() -> None:
    cited = [
        f"{p.relative_to(ROOT)}: {m[0]}"
        for p in SOURCES
        if p.name != Path(__file__).name
        for m in re.finditer(r"\bspec (section )?\d+(\.\d+)?", p.read_text())
    ]
    assert not cited, "cite docs/design.md instead:\n" + "\n".join(cited)
