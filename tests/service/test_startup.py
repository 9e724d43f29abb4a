"""Start-up refuses files it cannot serve, before binding a port, with a message that says what to do."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kgqa.model.modeling import build_model, save_checkpoint
from kgqa.model.runtime.export import export_model
from kgqa.model.tokenizer import build_char_tokenizer
from kgqa.service.engine import Engine, StartupError
from kgqa.service.settings import ServiceSettings
from tests.conftest import save_word_piece_checkpoint


@pytest.fixture(scope="module")
def foreign_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (untrained) word-piece model over a few characters: it cannot spell the test KB."""
    directory = save_word_piece_checkpoint(tmp_path_factory.mktemp("foreign") / "model", list("守望星光出品公司是什么"))
    export_model(directory)
    return directory


def test_model_that_cannot_spell_the_index_fails_start_up(
    service_settings: ServiceSettings, foreign_model: Path
) -> None:
    with pytest.raises(StartupError, match="does not fit the index") as caught:
        Engine.load(service_settings.model_copy(update={"model": foreign_model}))
    assert "train a kgqa model on this index" in str(caught.value)


def test_a_character_model_starts_over_a_kb_with_characters_it_never_saw(
    service_settings: ServiceSettings, tmp_path: Path
) -> None:
    """Open vocabulary: the index's other characters are added at load; it serves."""
    tokenizer = build_char_tokenizer(["守望星光出品公司是什么"])
    save_checkpoint(build_model(tokenizer, size="tiny"), tokenizer, tmp_path / "narrow", {})
    export_model(tmp_path / "narrow")
    engine = Engine.load(service_settings.model_copy(update={"model": tmp_path / "narrow"}))
    added = engine.describe()["model"]["added_characters"]
    assert added == len(set(engine.index.alphabet) - set("守望星光出品公司是什么")) > 30
    [candidates] = engine.answer(["你知道守望星光是哪家公司出品的吗？"], top_k=3)
    assert candidates and all(engine.index.is_path(c.name, c.relation, c.meaning) for c in candidates)


def test_missing_index_fails_start_up(service_settings: ServiceSettings, tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="kgqa index build"):
        Engine.load(service_settings.model_copy(update={"index": tmp_path / "no-index"}))


def test_corrupt_index_fails_start_up(service_settings: ServiceSettings, tmp_path: Path) -> None:
    corrupt = tmp_path / "index"
    shutil.copytree(service_settings.index, corrupt)
    data = (corrupt / "shards/00000/objects.zlib").read_bytes()
    (corrupt / "shards/00000/objects.zlib").write_bytes(data[: len(data) // 2])
    with pytest.raises(StartupError, match="rebuild"):
        Engine.load(service_settings.model_copy(update={"index": corrupt}))


def test_missing_model_fails_start_up(service_settings: ServiceSettings, tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="KGQA_MODEL"):
        Engine.load(service_settings.model_copy(update={"model": tmp_path / "no-model"}))


def test_serve_exits_2_with_the_message(service_settings: ServiceSettings, foreign_model: Path) -> None:
    command = [sys.executable, "-m", "kgqa.cli", "serve", "--model", str(foreign_model)]
    command += ["--index", str(service_settings.index), "--port", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "does not fit the index" in done.stderr
    assert "serving on" not in done.stdout  # no port was bound


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KGQA_PORT", "9123")
    monkeypatch.setenv("KGQA_WORKERS", "2")
    monkeypatch.setenv("KGQA_QUANTIZE", "false")
    settings = ServiceSettings()
    assert (settings.port, settings.workers, settings.quantize) == (9123, 2, False)
    assert ServiceSettings(port=8001).port == 8001  # an explicit value (a flag) wins


def test_bad_setting_is_a_clear_cli_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from kgqa.cli import main

    monkeypatch.setenv("KGQA_WORKERS", "0")
    assert main(["serve"]) == 2
    assert "workers" in capsys.readouterr().err


def test_connections_are_accepted_without_nagle() -> None:
    """Without TCP_NODELAY every keep-alive response waited ~40 ms for the client's delayed ACK (seen in bench)."""
    import socket

    import uvicorn

    from kgqa.service.server import listening_socket

    sock = listening_socket(uvicorn.Config(app=None, host="127.0.0.1", port=0))  # type: ignore[arg-type]
    sock.listen()  # uvicorn does this when it starts serving
    try:
        with socket.create_connection(sock.getsockname()[:2]):
            accepted, _ = sock.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()


def test_every_setting_is_a_serve_flag() -> None:
    """The flags are generated from ServiceSettings: each field has one, and a value given there reaches it."""
    import argparse

    from kgqa.service.commands import add_serve_command

    parser = argparse.ArgumentParser()
    add_serve_command(parser.add_subparsers())
    flags = ["--graceful-shutdown-s", "2.5", "--threads", "3", "--no-ranker", "--log-format", "json", "--port", "0"]
    args = parser.parse_args(["serve", *flags])
    assert set(ServiceSettings.model_fields) <= set(vars(args))
    given = {name: value for name, value in vars(args).items() if name in ServiceSettings.model_fields}
    settings = ServiceSettings(**{name: value for name, value in given.items() if value is not None})
    assert (settings.graceful_shutdown_s, settings.threads, settings.ranker) == (2.5, 3, False)
    assert (settings.log_format, settings.port, settings.quantize) == ("json", 0, True)
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--log-format", "xml"])  # a Literal's choices are the flag's
