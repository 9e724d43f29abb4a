"""Why a path: the constraint's view of each step of a decoded KB path, for people (``"explain": true``).

Replays the path's target through the same ``TokenConstraint`` that masked the decoding: at each step, how many
tokens the KB allowed after the prefix so far, whether the KB forced the step (one token allowed), and whether the
model decoded it or the KB completed it (with ``end_when_determined`` a hypothesis ends as soon as one KB key is left
ahead; its remaining steps are the KB's, at no cost to the score). Costs a few index lookups per step, after
decoding; nothing when not asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from kgqa.model.candidate import Candidate
from kgqa.model.decode.step import determined_key
from kgqa.model.targets import TargetCodec
from kgqa.trie import TokenConstraint
from kgqa.trie.keys import key_parts


@dataclass(frozen=True)
class TraceStep:
    part: str  # name, relation, meaning, separator or end
    text: str  # the character ("" for a separator or the end)
    allowed: int  # tokens the KB allowed at this step (the end of a path counts as one)
    forced: bool  # only this token was allowed
    decoded: bool  # False: the hypothesis had ended, one KB key left ahead, and the KB completed it


@dataclass(frozen=True)
class PathTrace:
    steps: list[TraceStep]
    source: str  # "beam" (decoded) or "name-anchored" (a path of a KB name in the question, scored by the model)

    # Every step is either chosen by the model (more than one token allowed) or forced by the KB; the steps the KB
    # completed after decoding stopped are forced steps too (one key was left). So chosen + forced = all steps.

    @property
    def chosen_steps(self) -> int:
        return sum(not step.forced for step in self.steps)

    @property
    def forced_steps(self) -> int:
        return sum(step.forced for step in self.steps)

    @property
    def completed_steps(self) -> int:
        """Forced steps the KB spelled after the hypothesis ended (never run through the decoder)."""
        return sum(not step.decoded for step in self.steps)

    @property
    def decoded_steps(self) -> int:
        return sum(step.decoded for step in self.steps)


def trace_path(
    candidate: Candidate, codec: TargetCodec, constraint: TokenConstraint, end_when_determined: bool = True
) -> PathTrace:
    """The steps of ``candidate``'s target, as the constraint saw them."""
    target = codec.encode(candidate.name, candidate.relation, candidate.meaning)
    parts = key_parts(codec.key_order)
    beam = candidate.beam_rank is not None
    steps: list[TraceStep] = []
    segment = 0
    ended = False  # the decoder ended the hypothesis here; the KB spelled the rest
    for position, token_id in enumerate(target):
        prefix = constraint.prefix_text(target[:position])
        allowed = constraint.allowed_after(prefix)
        if beam and end_when_determined and not ended:  # the decoding's own rule
            ended = determined_key(constraint, prefix, allowed) is not None
        if token_id == codec.sep_token_id:
            part, text = "separator", ""
            segment += 1
        elif token_id == codec.eos_token_id:
            part, text = "end", ""
        else:
            part, text = parts[segment], codec.id_to_char[token_id]
        steps.append(TraceStep(part, text, len(allowed), len(allowed) == 1, decoded=not ended))
    return PathTrace(steps, "beam" if beam else "name-anchored")
