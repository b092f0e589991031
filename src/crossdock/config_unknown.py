"""Settings nobody reads: a misspelt key in ``crossdock.cfg`` or a ``CROSSDOCK__`` variable.

A typo such as ``exectuor = CeleryExecutor`` used to be ignored without a word, and the
user learnt about it only from a scheduler quietly running the default. Start-up now names
every key and section that is not declared, with the nearest declared name as a
suggestion. This module only finds them; :meth:`crossdock.configuration.CrossdockConfig.validate`
decides whether they are warnings or an error (``[core] strict_config``).
"""

from __future__ import annotations

import difflib
from typing import Collection, Iterable, Mapping


def suggestion(word: str, candidates: Iterable[str]) -> str | None:
    """The declared name closest to ``word``, if one is close enough to be a typo of it."""
    matches = difflib.get_close_matches(word, list(candidates), n=1)
    return matches[0] if matches else None


def did_you_mean(text: str | None) -> str:
    """The tail of a message that offers ``text`` as the name meant (nothing without one)."""
    return f"; did you mean {text}?" if text else ""


def unknown_in_file(known: Mapping[str, Collection[str]], open_sections: Collection[str],
                    file_sections: Mapping[str, Iterable[str]]) -> list[str]:
    """One message per undeclared section, and per undeclared key of a declared section.

    ``known`` maps each declared section to its keys; a section in ``open_sections``
    accepts any key; ``file_sections`` is what the config file holds.
    """
    messages = []
    for section, keys in file_sections.items():
        if section not in known:
            near = suggestion(section, known)
            messages.append(f"[{section}] is not a crossdock section"
                            + did_you_mean(f"[{near}]" if near else None))
            continue
        if section in open_sections:
            continue
        for key in keys:
            if key not in known[section]:
                messages.append(f"[{section}] {key} is not a crossdock setting"
                                + did_you_mean(suggestion(key, known[section])))
    return messages


def unknown_in_environment(known: Mapping[str, Collection[str]], open_sections: Collection[str],
                           names: Iterable[str], prefix: str) -> list[str]:
    """One message per ``PREFIX<SECTION>__<KEY>`` variable that names no declared setting.

    The suggestion is given as a variable name, ready to paste.
    """
    messages = []
    for name in names:
        if not name.startswith(prefix):
            continue
        section, sep, key = name[len(prefix):].lower().partition("__")
        if not sep or not section or not key:
            messages.append(f"environment variable {name} is not of the form {prefix}SECTION__KEY")
            continue
        if section not in known:
            near = suggestion(section, known)
            if near is None:
                meant = None
            elif key in known[near] or near in open_sections:
                meant = f"{prefix}{near.upper()}__{key.upper()}"
            else:
                meant = f"[{near}]"
            messages.append(f"environment variable {name}: [{section}] is not a crossdock section"
                            + did_you_mean(meant))
        elif section not in open_sections and key not in known[section]:
            near = suggestion(key, known[section])
            messages.append(f"environment variable {name}: [{section}] {key} is not a crossdock setting"
                            + did_you_mean(f"{prefix}{section.upper()}__{near.upper()}" if near else None))
    return messages
