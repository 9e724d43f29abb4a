"""Answer questions: encode, generate KB paths under the trie constraint, look up their objects.

Questions are batched (sorted by length, so padding is small) and decoded with transformers' ``generate``; the
constraint is one LogitsProcessor. Each question gets up to ``top_k`` distinct KB paths, best first.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from kgqa.model.candidate import Candidate
from kgqa.model.constrained import KBConstraintLogitsProcessor
from kgqa.model.lookahead import RelationLookahead
from kgqa.model.modeling import default_device, load_checkpoint, quantize_for_cpu, target_order
from kgqa.model.rerank import RerankWeights, rerank
from kgqa.model.scores import PathScoreRecorder
from kgqa.model.targets import TargetCodec
from kgqa.trie import KBIndex, PathKey
from kgqa.trie.keys import split_path_key


@dataclass(frozen=True)
class DecodeOptions:
    num_beams: int = 5
    constrained: bool = True  # off only for the ablation: then the output may be no KB path at all
    lookahead: bool = True
    lookahead_strength: float = 1.0  # α in p ** (1 / (α·Δ + 1)); 1 is the published formula
    end_when_determined: bool = True  # end a hypothesis once one KB key is left ahead (same score, fewer steps)
    rerank_relation_weight: float = 0.0  # see kgqa.model.rerank; chosen by `kgqa tune`
    rerank_name_weight: float = 0.0
    batch_size: int = 64
    max_new_tokens: int = 128
    max_question_chars: int = 200  # longer questions are cut (KgCLUE's longest is 54)

    # what `kgqa tune` chooses and stores under "decoding" in a model's kgqa.json
    TUNED: ClassVar[tuple[str, ...]] = ("lookahead_strength", "rerank_relation_weight", "rerank_name_weight")

    @classmethod
    def from_training_info(cls, info: dict[str, Any], **changes: Any) -> DecodeOptions:
        """The options a model was tuned with (its ``kgqa.json``), with ``changes`` on top."""
        tuned = {k: v for k, v in info.get("decoding", {}).items() if k in cls.TUNED}
        return cls(**(tuned | changes))


class QuestionAnswerer:
    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        index: KBIndex,
        options: DecodeOptions | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.index = index
        self.options = options or DecodeOptions()
        self.codec = TargetCodec(tokenizer, target_order(model))
        self.constraint = self.codec.constraint(index)  # VocabularyMismatchError when the model cannot spell the KB
        self.lookahead = RelationLookahead(index)

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        index: KBIndex | str | Path,
        options: DecodeOptions | None = None,
        device: torch.device | str | None = None,
        quantize: bool = False,
    ) -> QuestionAnswerer:
        """``quantize``: int8 Linear layers on the CPU (see ``quantize_for_cpu``)."""
        model, tokenizer = load_checkpoint(model_dir)
        model = quantize_for_cpu(model) if quantize else model.to(device or default_device())
        return cls(model, tokenizer, index if isinstance(index, KBIndex) else KBIndex(index), options)

    def with_options(self, **changes: object) -> QuestionAnswerer:
        """The same model, index and constraint tables, other decoding options (nothing is rebuilt)."""
        other = copy.copy(self)
        other.options = replace(self.options, **changes)
        return other

    def answer(self, questions: Sequence[str], top_k: int = 1, progress: bool = False) -> list[list[Candidate]]:
        """Up to ``top_k`` candidates per question, best first; an empty list when no KB path fits."""
        results: list[list[Candidate]] = [[] for _ in questions]
        cleaned = [q.strip()[: self.options.max_question_chars] for q in questions]
        order = sorted((i for i, q in enumerate(cleaned) if q), key=lambda i: len(cleaned[i]), reverse=True)
        size = self.options.batch_size
        batches = [order[start : start + size] for start in range(0, len(order), size)]
        with tqdm(total=len(order), desc="answering", unit="q", disable=not progress) as bar:
            for batch in batches:
                for i, candidates in zip(batch, self._answer_batch([cleaned[i] for i in batch], top_k), strict=True):
                    results[i] = candidates
                bar.update(len(batch))
        return results

    @torch.inference_mode()
    def _answer_batch(self, questions: list[str], top_k: int) -> list[list[Candidate]]:
        options = self.options
        num_beams = max(options.num_beams, top_k)
        encoded = self.tokenizer(questions, padding=True, return_tensors="pt", add_special_tokens=True)
        device = self.model.device
        processors = LogitsProcessorList()
        if options.constrained:
            processors.append(
                KBConstraintLogitsProcessor(
                    self.constraint,
                    num_beams=num_beams,
                    questions=questions,
                    lookahead=self.lookahead if options.lookahead else None,
                    lookahead_strength=options.lookahead_strength,
                    end_when_determined=options.end_when_determined,
                )
            )
        # last: it sees the scores the search ranks by (transformers keeps them only with output_scores, at a cost)
        recorder = PathScoreRecorder(num_beams, self.codec.eos_token_id, normalize=num_beams == 1 and not processors)
        processors.append(recorder)
        # A fresh generation config: a pretrained checkpoint's (forced BOS, no-repeat n-grams...) would fight the trie.
        # length_penalty 0: a hypothesis' score is the sum of its log-probs, its probability whatever its length, and
        # never rises as it grows; so early_stopping=False (stop once no running beam can beat the finished ones) is
        # exact. early_stopping=True would stop at the first num_beams finished, dropping better paths still running.
        beam_settings = {"early_stopping": False, "length_penalty": 0.0} if num_beams > 1 else {}
        config = GenerationConfig(
            max_new_tokens=options.max_new_tokens,
            num_beams=num_beams,
            num_return_sequences=num_beams,
            do_sample=False,
            **beam_settings,
            decoder_start_token_id=self.model.config.decoder_start_token_id,
            eos_token_id=self.codec.eos_token_id,
            pad_token_id=self.codec.pad_token_id,
        )
        out = self.model.generate(
            input_ids=encoded["input_ids"].to(device),
            attention_mask=encoded["attention_mask"].to(device),
            generation_config=config,
            logits_processor=processors,
        )
        sequences = out[:, 1:].tolist()
        weights = RerankWeights(options.rerank_relation_weight, options.rerank_name_weight)
        results = []
        for q, question in enumerate(questions):
            rows = range(q * num_beams, (q + 1) * num_beams)
            candidates = self._candidates([(sequences[r], recorder.score(q, sequences[r])) for r in rows])
            results.append(rerank(question, candidates, self.index, weights)[:top_k])
        return results

    def _candidates(self, hypotheses: list[tuple[list[int], float]]) -> list[Candidate]:
        """Distinct paths of the finished hypotheses, best first (those cut off before their end dropped)."""
        found: list[Candidate] = []
        seen: set[tuple[str, str, str]] = set()
        for token_ids, score in sorted(hypotheses, key=lambda h: h[1], reverse=True):
            if not math.isfinite(score):
                continue
            path = self.codec.decode(token_ids)
            objects = self.index.objects(path.name, path.relation, path.meaning) if path else []
            if not objects and self.options.constrained:
                path = self._completed(token_ids)  # ended where one KB key was left ahead: that key
                objects = self.index.objects(path.name, path.relation, path.meaning) if path else []
                if not objects:
                    continue  # cut off before its end (max_new_tokens): not a KB path
            if path is None or path in seen:
                continue
            seen.add(path)
            obj = objects[0] if objects else ""
            found.append(Candidate(path.name, path.relation, path.meaning, obj, score, log_probability=score))
        return found

    def _completed(self, token_ids: list[int]) -> PathKey | None:
        """The one KB path a target that ended early (EOS before its end) leads to."""
        eos = self.codec.eos_token_id
        if eos not in token_ids:
            return None
        key = self.constraint.completion(token_ids[: token_ids.index(eos)])
        return split_path_key(key, self.index.key_order) if key else None
