"""The index manifest: what was built from what, and the checks that refuse a corrupt or foreign index at load."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kgqa.data.report import sha256_file
from kgqa.trie.keys import NAME_RELATION_MEANING

FORMAT = "kgqa-index"
FORMAT_VERSION = 4  # 3: relation_stats.marisa; 4: objects in zlib blocks
MANIFEST_NAME = "manifest.json"


class IndexLoadError(RuntimeError):
    """An index directory that cannot be used; the message says what to do."""


class IndexBuildError(RuntimeError):
    """An index build that cannot go on (a worker died, Ray missing); the message says what to do."""


def rebuild_hint(directory: Path) -> str:
    return f"rebuild it with: kgqa index build --kb KNOWLEDGE_FILE --out {directory}"


@dataclass
class Manifest:
    heavy_threshold: int
    sources: list[dict[str, Any]]
    counts: dict[str, int]
    read: dict[str, Any]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    build_seconds: float = 0.0
    created_at: str = ""
    kgqa_version: str = ""
    key_order: str = NAME_RELATION_MEANING
    # each shard's directory, first key and number of paths, in key order
    shards: list[dict[str, Any]] = field(default_factory=list)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def write(self, directory: Path) -> None:
        text = json.dumps(asdict(self), ensure_ascii=False, indent=2)
        (directory / MANIFEST_NAME).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        """Read and check the manifest and the presence and sizes of the files it lists (cheap: no hashing)."""
        if not directory.is_dir():
            raise IndexLoadError(
                f"no index directory at {directory}: build one with "
                f"kgqa index build --kb KNOWLEDGE_FILE --out {directory}"
            )
        path = directory / MANIFEST_NAME
        if not path.is_file():
            raise IndexLoadError(
                f"{directory} has no {MANIFEST_NAME}, so it is not a finished kgqa index; " + rebuild_hint(directory)
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexLoadError(f"{path} is corrupt ({exc}); " + rebuild_hint(directory)) from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise IndexLoadError(f"{directory} is not a kgqa index (manifest format is not {FORMAT!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise IndexLoadError(
                f"{directory} has index format version {data.get('format_version')}, this kgqa reads version "
                f"{FORMAT_VERSION}; " + rebuild_hint(directory)
            )
        try:
            manifest = cls(**data)
        except TypeError as exc:
            raise IndexLoadError(f"{path} is corrupt ({exc}); " + rebuild_hint(directory)) from exc
        for name, info in manifest.files.items():
            file = directory / name
            if not file.is_file():
                raise IndexLoadError(
                    f"index file {file} is missing; the index is incomplete; " + rebuild_hint(directory)
                )
            if file.stat().st_size != info["size"]:
                raise IndexLoadError(
                    f"index file {file} has {file.stat().st_size} bytes, its manifest says {info['size']}: the index "
                    "is truncated or corrupt; " + rebuild_hint(directory)
                )
        return manifest

    def built_from(self, sources: list[Path]) -> bool:
        """Whether this index was built from exactly these files, as they are now (same paths and sizes; cheap, no
        hashing: what `kgqa prepare` checks before deciding to rebuild)."""
        return [(s["path"], s["size"]) for s in self.sources] == [(str(p.resolve()), p.stat().st_size) for p in sources]

    def verify_checksums(self, directory: Path) -> list[str]:
        """Files whose SHA-256 differs from the manifest (reads every byte; `kgqa index verify`)."""
        return [name for name, info in self.files.items() if sha256_file(directory / name) != info["sha256"]]

    def record_files(self, directory: Path) -> None:
        self.files = {
            p.relative_to(directory).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(directory.rglob("*"))
            if p.is_file() and p != directory / MANIFEST_NAME
        }
