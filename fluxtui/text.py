"""Display untrusted strings (process names, command lines, paths) literally.

Rich `Text` is never parsed as markup; control characters (ESC, CR, ...) are made visible as
escapes so they cannot move the cursor, recolour the terminal or hide text.
"""

from __future__ import annotations

import re

from rich.text import Text

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def visible(value: str) -> str:
    """`value` with control and bidi-override characters replaced by \\xNN / \\uNNNN escapes."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _CONTROL.sub(escape, value)


def safe_text(value: str, style: str = "") -> Text:
    """A Rich Text that shows `value` exactly as it is, never interpreted."""
    return Text(visible(value), style=style, no_wrap=True, overflow="ellipsis")
