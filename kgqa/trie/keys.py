"""How a KB path is spelled as one key: ``name SEP relation SEP meaning``.

The decoder's target is ``name [SEP] relation [SEP] meaning [EOS]``, so the index is keyed by exactly that string
(characters, not token ids: the tokenizer is character-level and maps characters to ids through its vocabulary).
An empty meaning (a head without ``（meaning）``) ends the key right after the second SEP.
Both separators are control characters, which the KB reader rejects inside fields, so keys split unambiguously.
"""

from __future__ import annotations

from typing import NamedTuple

SEP = "\x1f"
SEP_CODE = ord(SEP)
# Not a character of any key: the code returned among the allowed next characters when the key may end (-> EOS).
END = "\x1e"
END_CODE = ord(END)


class PathKey(NamedTuple):
    name: str
    relation: str
    meaning: str


def path_key(name: str, relation: str, meaning: str = "") -> str:
    return f"{name}{SEP}{relation}{SEP}{meaning}"


def split_path_key(key: str) -> PathKey:
    name, relation, meaning = key.split(SEP)
    return PathKey(name, relation, meaning)
