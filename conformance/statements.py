"""The requirement statements of the runtime-spec, read from its own markdown.

Coverage is computed against this list, not a hand-kept one, so a sentence the
suite forgot shows up as uncovered instead of silently not existing.  Each
statement is one sentence holding MUST / MUST NOT / SHOULD / SHOULD NOT, keyed
by the nearest preceding `<a name="...">` anchor; tests cite it by that anchor
plus a fragment of the sentence (see `find`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEC_DIR = HERE.parent.parent / "shared" / "oci-runtime-spec"
FILES = ("runtime.md", "runtime-linux.md", "config.md", "config-linux.md",
         "features.md", "features-linux.md", "bundle.md")

_ANCHOR = re.compile(r'<a name="([^"]+)"\s*/?>')
_KEYWORD = re.compile(r"\b(MUST NOT|MUST|SHOULD NOT|SHOULD)\b")
_BULLET = re.compile(r"^(\s*)(?:[*-]|\d+\.)\s+(.*)$")
# Bullets whose label puts everything under them on another platform.
_OTHER_PLATFORM = re.compile(r"^(?:\*\*)?(Windows|Solaris|z/OS|FreeBSD|For all other platforms|"
                             r"On Windows)\b")
_OTHER_WORDS = re.compile(r"\b(Windows|Solaris|Hyper-V|z/OS|FreeBSD)\b|\bwindows\b")
_NON_LINUX_ANCHORS = {"configZOSProcess", "configWindowsUser"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`*\[(])")


@dataclass(frozen=True)
class Statement:
    file: str
    anchor: str
    index: int          # position among the anchor's statements, 1-based
    level: str          # MUST, MUST NOT, SHOULD, SHOULD NOT (the strongest present)
    text: str           # normalised sentence
    linux: bool         # False when it is about another platform only

    @property
    def key(self) -> str:
        return f"{self.anchor}.{self.index}"

    @property
    def must(self) -> bool:
        return self.level.startswith("MUST")


def normalise(text: str) -> str:
    """Markdown out, whitespace collapsed: what a citation fragment is matched against."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)      # [text](link)
    text = re.sub(r"\[([^\]^]*)\]\[[^\]]*\]", r"\1", text)     # [text][ref]
    text = text.replace("**", "").replace("`", "").replace("*", "")
    return re.sub(r"\s+", " ", text).strip()


def _level(sentence: str) -> str | None:
    found = set(_KEYWORD.findall(sentence))
    for level in ("MUST NOT", "MUST", "SHOULD NOT", "SHOULD"):
        if level in found:
            return level
    return None


def _paragraphs(lines: list[str]):
    """Yield (anchor, labels of enclosing bullets, text) per paragraph or bullet item."""
    anchor = ""
    stack: list[tuple[int, str]] = []     # (indent, label) of open bullets
    buf: list[str] = []
    in_code = False

    def flush():
        if buf:
            yield anchor, [label for _, label in stack], " ".join(buf)
            buf.clear()

    for raw in lines:
        line = raw.rstrip("\n")
        if line.lstrip().startswith("```"):
            yield from flush()
            in_code = not in_code
            continue
        if in_code:
            continue
        m = _ANCHOR.search(line)
        if m and line.lstrip().startswith("#"):
            yield from flush()
            anchor = m.group(1)
            stack.clear()
            continue
        if m:
            anchor = m.group(1)
        if not line.strip():
            yield from flush()
            continue
        if line.count("|") >= 2:                     # a table row is its own paragraph
            yield from flush()
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            buf.append(" | ".join(cells))
            yield from flush()
            continue
        b = _BULLET.match(line)
        if b:
            yield from flush()
            indent = len(b.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, b.group(2)))
            buf.append(b.group(2))
            continue
        indent = len(line) - len(line.lstrip())
        if not buf:                                  # a paragraph after a blank line
            while stack and stack[-1][0] >= indent:
                stack.pop()
        buf.append(line.strip())
    yield from flush()


def load(spec_dir: Path = SPEC_DIR) -> list[Statement]:
    out: list[Statement] = []
    for name in FILES:
        counts: dict[str, int] = {}
        lines = (spec_dir / name).read_text().splitlines()
        for anchor, labels, text in _paragraphs(lines):
            text = _ANCHOR.sub("", text)
            for sentence in _SENTENCE_END.split(text):
                level = _level(sentence)
                if not level:
                    continue
                norm = normalise(sentence)
                other = (anchor in _NON_LINUX_ANCHORS
                         or any(_OTHER_PLATFORM.match(normalise(label)) for label in labels)
                         or bool(_OTHER_WORDS.search(norm)))
                counts[anchor] = counts.get(anchor, 0) + 1
                out.append(Statement(name, anchor, counts[anchor], level, norm, not other))
    return out


def find(statements: list[Statement], anchor: str, fragment: str, nth: int = 0) -> Statement:
    """The statement under `anchor` containing `fragment` ('^' prefix: starting with it).

    A fragment must pick exactly one statement; where the spec repeats a sentence
    word for word (each hook kind, idmap and ridmap) `nth` (1-based) says which."""
    frag = normalise(fragment)
    if frag.startswith("^"):
        hits = [s for s in statements if s.anchor == anchor and s.text.startswith(frag[1:])]
    else:
        hits = [s for s in statements if s.anchor == anchor and frag in s.text]
    if nth and len(hits) >= nth:
        return hits[nth - 1]
    if len(hits) != 1 or nth:
        raise LookupError(f"citation {anchor!r} {fragment!r} (nth={nth}) matches {len(hits)} statements")
    return hits[0]


if __name__ == "__main__":
    for s in load():
        print(f"{'L' if s.linux else '-'} {s.level:10} {s.file}:{s.key}  {s.text}")
