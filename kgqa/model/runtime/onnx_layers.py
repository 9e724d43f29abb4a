"""The model's layers on ONNX Runtime: the two graphs ``kgqa model export`` traced from the torch modules
(``torch_layers.EncoderGraph``, ``DecoderGraph``), fed numpy arrays.

Sessions are made in the process that runs them: a worker forked after loading makes its own on its first call (a
session's thread pool does not survive a fork), from the graph bytes read once before the fork. The sessions it
inherited are kept, never destroyed: their destructor waits on pool threads that exist only in the parent (a forked
process ends by ``os._exit``, without destructors).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kgqa.model.runtime.graphs import export_command, graph_paths, read_manifest
from kgqa.model.runtime.spec import ModelFormatError

_INHERITED: list[object] = []  # a forked process's copies of its parent's sessions (see the module's docstring)


class OnnxLayers:
    name = "onnx"

    def __init__(self, directory: str | Path, quantized: bool = False, threads: int | None = None) -> None:
        import onnxruntime

        self._onnxruntime = onnxruntime
        manifest = read_manifest(directory)
        self.parameters = int(manifest["parameters"])
        self.directory = Path(directory)
        self.graphs: dict[str, bytes] = {}
        self.files = graph_paths(directory, quantized)
        for part, path in self.files.items():
            if path.name not in manifest.get("graphs", {}) or not path.is_file():
                raise ModelFormatError(
                    f"{directory} has no {path.name} of this export; run `{export_command(directory)}`"
                    + (" (without --no-int8)" if quantized else "")
                )
            self.graphs[part] = path.read_bytes()
        self.threads = threads
        self._pid = -1  # the process that made the sessions
        self._stale = True
        self._sessions: dict[str, object] = {}
        self._session("encoder")  # a corrupt graph fails here, at load, not at the first question

    def set_threads(self, threads: int) -> None:
        if threads != self.threads:
            self.threads = threads
            self._stale = True  # new sessions on the next call

    def _session(self, part: str) -> Any:  # onnxruntime.InferenceSession
        if self._stale or self._pid != os.getpid():
            options = self._onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads or 0  # 0: onnxruntime's default (a thread a core)
            options.inter_op_num_threads = 1
            # no spinning between calls: the pool's threads would take the core the search's Python runs on (a
            # lone question took 25 ms with 2 spinning threads against 11 ms with 1 thread or 2 that sleep)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if self._sessions and self._pid != os.getpid():
                _INHERITED.append(self._sessions)
            self._sessions = {}
            for name, graph in self.graphs.items():
                try:
                    self._sessions[name] = self._onnxruntime.InferenceSession(
                        graph, options, providers=["CPUExecutionProvider"]
                    )
                except Exception as exc:  # onnxruntime's own errors have no common base class
                    raise ModelFormatError(
                        f"the ONNX graph {self.files[name]} cannot be loaded ({exc}); "
                        f"run `{export_command(self.directory)}`"
                    ) from exc
            self._decoder_inputs = [i.name for i in self._sessions["decoder"].get_inputs()]
            self._pid, self._stale = os.getpid(), False
        return self._sessions[part]

    def encode(self, embeds: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
        return self._session("encoder").run(None, {"embeds": embeds, "attention_mask": attention_mask})

    def decode(
        self,
        embeds: np.ndarray,
        positions: np.ndarray,
        self_mask: np.ndarray,
        cross_mask: np.ndarray,
        caches: Sequence[np.ndarray],
    ) -> list[np.ndarray]:
        session = self._session("decoder")
        values = [embeds, positions, self_mask, cross_mask, *caches]
        return session.run(None, dict(zip(self._decoder_inputs, values, strict=True)))
