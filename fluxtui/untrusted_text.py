"""Display untrusted strings (process names, command lines, paths) literally.

Rich `Text` is never parsed as markup; control characters (ESC, CR, ...) are made visible as
escapes so they cannot move the cursor, recolour the terminal or hide text. Every view (tables,
details, the guard prompt, alerts, the headless text output) goes through `visible`, so the same
bytes read the same everywhere:

- a control or bidi-override character becomes `\\xNN` / `\\uNNNN` (`\\r` is `\\x0d`);
- a byte that was not UTF-8 (kept by Python as a lone surrogate, U+DC80-U+DCFF, when read with
  `surrogateescape` as psutil and os.fsdecode do) becomes `\\xNN`, its original value;
- a backslash that could be read as the start of an escape (before `x`, `u`, another
  backslash or an escaped character) is doubled, so `\\x1b` typed literally by a user never
  looks like an ESC byte.
"""

from __future__ import annotations

import re

from rich.text import Text

_ESCAPED = (r"\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069"
            r"\udc80-\udcff")
_CONTROL = re.compile(f"[{_ESCAPED}]")
_BACKSLASH = re.compile(f"\\\\(?=[xu\\\\{_ESCAPED}])")


def only_escaped_bytes(value: str) -> bool:
    """Whether every surrogate in `value` is one surrogateescape made (U+DC80-U+DCFF): an
    undecodable byte of a name, to be written back as the byte it was."""
    return all(0xDC80 <= ord(c) <= 0xDCFF for c in value if 0xD800 <= ord(c) <= 0xDFFF)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: str) -> str:
    """`value` with control, bidi-override and undecodable characters replaced by escapes."""
    return _CONTROL.sub(_escape, _BACKSLASH.sub(r"\\\\", value))


def safe_text(value: str, style: str = "") -> Text:
    """A Rich Text that shows `value` exactly as it is, never interpreted."""
    return Text(visible(value), style=style, no_wrap=True, overflow="ellipsis")
