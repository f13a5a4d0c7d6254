"""Does a rendered input carry an instruction, or only the record's own fields and labels?

The Flan collection (paper section 2.1, appendix E) wraps every record in a template that says
what to do with it; a template that renders as the bare record (a German sentence with no
request to translate it) teaches nothing about instructions. This module holds the one shared
definition used by tests/test_muffin_templates.py and the template audit:

remove from the rendered input every field value, every option text and every options header;
the input "has an instruction" if at least `MIN_INSTRUCTION_WORDS` words (runs of letters) remain.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flan_nb.data.templates import OPTIONS_HEADERS

MIN_INSTRUCTION_WORDS = 3
_WORD = re.compile(r"[^\W\d_]+")


def _remove(text: str, value: str) -> str:
    value = value.strip()
    if not value:
        return text
    # whole-word removal where the value starts/ends with a word character, so a short label
    # such as "no" does not eat the "no" inside "not"
    left = r"(?<!\w)" if value[0].isalnum() else ""
    right = r"(?!\w)" if value[-1].isalnum() else ""
    return re.sub(left + re.escape(value) + right, " ", text)


def instruction_words(rendered_input: str, field_values: Iterable[str],
                      options: Iterable[str] = ()) -> list[str]:
    """The words of `rendered_input` left after removing field values, options and headers.

    Longer strings are removed first so a value that contains another is removed whole.
    """
    strings = {str(v) for v in field_values} | {str(o) for o in options} | set(OPTIONS_HEADERS)
    text = rendered_input
    for value in sorted(strings, key=len, reverse=True):
        text = _remove(text, value)
    return _WORD.findall(text)


def input_has_instruction(rendered_input: str, field_values: Iterable[str],
                          options: Iterable[str] = ()) -> bool:
    """True if at least MIN_INSTRUCTION_WORDS words remain once the record's field values, its
    option texts and the options header are removed from `rendered_input` (see module doc)."""
    return len(instruction_words(rendered_input, field_values, options)) >= MIN_INSTRUCTION_WORDS
