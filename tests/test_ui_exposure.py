"""``automl-bin ui`` on an address other machines can reach warns that MLflow has no login."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from automl_bin.cli import ui
from automl_bin.cli.ui import exposure_warning, is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost",
                                  "LOCALHOST"])
def test_loopback_hosts_need_no_warning(host: str) -> None:
    assert is_loopback(host)
    assert exposure_warning(host, 5000) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "myserver"])
def test_other_hosts_get_the_warning_with_the_fixes(host: str) -> None:
    assert not is_loopback(host)
    text = exposure_warning(host, 5123)
    assert text is not None
    assert "no authentication" in text and f"--host {host}" in text
    assert "ssh -L 5123:127.0.0.1:5123" in text and "reverse proxy" in text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def _ui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[Any, list[Any]]:
    """Run ``automl-bin ui`` up to the point where it would start the server."""
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"")  # a store file exists; the server itself is not started
    served: list[Any] = []
    monkeypatch.setattr(ui, "_serve", lambda *a: served.append(a))
    result = CliRunner().invoke(ui.ui_command, ["--uri", f"sqlite:///{db}",
                                                "--port", str(_free_port()), *args])
    return result, served


def test_ui_on_all_interfaces_prints_the_warning_before_serving(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, served = _ui(tmp_path, monkeypatch, "--host", "0.0.0.0")
    assert result.exit_code == 0, result.output
    assert served and served[0][1] == "0.0.0.0"
    text = " ".join(result.output.split())
    assert "Warning: --host 0.0.0.0 exposes this MLflow server to the network" in text
    assert "no authentication" in text and "SSH tunnel" in text


def test_ui_on_loopback_prints_no_warning(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    result, served = _ui(tmp_path, monkeypatch)
    assert result.exit_code == 0 and served, result.output
    assert "authentication" not in result.output
