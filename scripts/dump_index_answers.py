"""Write what an index answers, as text, for queries taken from the knowledge files (not from the index), so that
two indexes of the same KB -- built by different versions of kgqa, or with other shards, budgets or engines -- can
be compared with ``cmp``:

- every distinct path of the files, in file order, with its objects;
- the allowed next characters of every prefix of ``--samples`` paths drawn from the files (seeded), of every gold
  path of ``--questions``, and of a dead end after each;
- every triple of those paths' names.

    python scripts/dump_index_answers.py INDEX KB_FILE... --out answers.txt [--questions dev.json] [--every N]
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from pathlib import Path

from tqdm import tqdm

from kgqa.data.knowledge import iter_triples, split_head
from kgqa.data.questions import read_questions
from kgqa.trie import KBIndex, path_key, split_path_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path)
    parser.add_argument("kb", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--questions", type=Path, action="append", default=[])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=1, help="the paths of every N-th line only (a KB of 100M)")
    args = parser.parse_args()
    started = time.perf_counter()
    index = KBIndex(args.index)
    keys: dict[str, None] = {}
    for kb in args.kb:
        triples = tqdm(iter_triples(kb), desc=f"paths of {kb.name}", unit="triple", unit_scale=True)
        for head, relation, _ in itertools.islice(triples, 0, None, args.every):
            keys[path_key(*_name_relation_meaning(head, relation), index.key_order)] = None
    sample = random.Random(args.seed).sample(list(keys), min(args.samples, len(keys)))
    for questions in args.questions:
        sample += [
            path_key(*_name_relation_meaning(q.answer.subject, q.answer.predicate), index.key_order)
            for q in read_questions(questions)
        ]
    prefixes = sorted({key[:depth] for key in sample for depth in range(len(key) + 1)} | {k + "\u4e00" for k in sample})
    names = sorted({split_path_key(key, index.key_order).name for key in sample})
    with open(args.out, "w", encoding="utf-8") as out:
        out.write(f"paths {len(index)}\n")
        for key in tqdm(keys, desc="objects", unit="path", unit_scale=True):
            out.write(f"{key}\t{index.objects(*_as_lookup(key, index))}\n")
        for prefix in tqdm(prefixes, desc="next characters", unit="prefix", unit_scale=True):
            out.write(f"{prefix}\t{index.next_codepoints(prefix).tolist()}\n")
        for name in names:
            out.write(f"{name}\t{index.triples(name)}\n")
    print(
        f"{args.out}: {len(keys):,} paths, {len(prefixes):,} prefixes, {len(names):,} names "
        f"({time.perf_counter() - started:.0f} s)"
    )


def _name_relation_meaning(head: str, relation: str) -> tuple[str, str, str]:
    name, meaning = split_head(head)
    return name, relation, meaning


def _as_lookup(key: str, index: KBIndex) -> tuple[str, str, str]:
    path = split_path_key(key, index.key_order)
    return path.name, path.relation, path.meaning


if __name__ == "__main__":
    main()
