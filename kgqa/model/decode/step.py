"""The hypotheses of one decoding step, read once and shared by every processor of that step.

transformers hands each ``LogitsProcessor`` the same ``input_ids``; turning them into target tuples (and those into
index-key text) once per step, not once per processor, keeps the per-step Python work from growing with the number of
processors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kgqa.trie import TokenConstraint

if TYPE_CHECKING:
    import torch


class DecodingStep:
    """``targets(input_ids)``: each row's target so far (decoder start removed); ``text(target)``: its key text.

    Example:
        >>> step = DecodingStep(constraint)
        >>> targets = step.targets(input_ids)  # the same list for every processor called with these input_ids
        >>> step.text(targets[0])  # "守望星光\\x1f出品" or None (EOS in it)
    """

    def __init__(self, constraint: TokenConstraint, prompt_length: int = 1) -> None:
        self.constraint = constraint
        self.prompt_length = prompt_length  # the decoder start token(s) before the target
        self._input_ids: torch.Tensor | None = None  # held, so the identity check below cannot see a reused id
        self._targets: list[tuple[int, ...]] = []
        self._text: dict[tuple[int, ...], str | None] = {}

    def targets(self, input_ids: torch.Tensor) -> list[tuple[int, ...]]:
        if input_ids is not self._input_ids:
            self._input_ids = input_ids
            self._targets = [tuple(row) for row in input_ids[:, self.prompt_length :].tolist()]
        return self._targets

    def text(self, target: tuple[int, ...]) -> str | None:
        found = self._text.get(target, ...)
        if found is ...:
            found = self._text[target] = self.constraint.prefix_text(target)
        return found


def determined_key(constraint: TokenConstraint, prefix: str | None, allowed: np.ndarray) -> str | None:
    """The one KB key a prefix leads to, when decoding may end there (``end_when_determined``); else None.

    ``allowed``: the constraint's answer for ``prefix``. One way on (a single token, not EOS) is necessary for one key
    ahead; only then is the trie asked.
    """
    if len(allowed) == 1 and allowed[0] != constraint.eos_token_id:
        return constraint.completion_of(prefix)
    return None
