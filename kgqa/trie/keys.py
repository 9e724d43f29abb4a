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


# The order of the parts in a key (and so in the decoder's target). Name first always; relation before meaning is the
# default ("predict the easy parts first"); the other order exists for the ablation.
NAME_RELATION_MEANING = "name,relation,meaning"
NAME_MEANING_RELATION = "name,meaning,relation"
KEY_ORDERS = (NAME_RELATION_MEANING, NAME_MEANING_RELATION)


def key_parts(order: str = NAME_RELATION_MEANING) -> tuple[str, str, str]:
    """The parts of a key in ``order``: ("name", "relation", "meaning") or ("name", "meaning", "relation")."""
    if order not in KEY_ORDERS:
        raise ValueError(f"unknown key order {order!r}: one of {', '.join(KEY_ORDERS)}")
    return ("name", "meaning", "relation") if order == NAME_MEANING_RELATION else ("name", "relation", "meaning")


# the two below run for every triple of an index build: plain f-strings, not key_parts
def path_key(name: str, relation: str, meaning: str = "", order: str = NAME_RELATION_MEANING) -> str:
    if order == NAME_MEANING_RELATION:
        return f"{name}{SEP}{meaning}{SEP}{relation}"
    return f"{name}{SEP}{relation}{SEP}{meaning}"


def split_path_key(key: str, order: str = NAME_RELATION_MEANING) -> PathKey:
    """The path of a whole key; ValueError unless it has exactly three parts."""
    name, second, third = key.split(SEP)
    if order == NAME_MEANING_RELATION:
        return PathKey(name, third, second)
    return PathKey(name, second, third)
