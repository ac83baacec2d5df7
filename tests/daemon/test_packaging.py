"""Shipping, the daemon's side: the image's entrypoint and healthcheck scripts, run here, and the
systemd unit, checked with `systemd-analyze` (docker/). The images: tests/repo/test_packaging_images.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from types import ModuleType

import pytest

from helpers.paths import ROOT

DOCKER = ROOT / "docker"
SOCKET = "/run/sqlcoder/sqlcoder.sock"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, DOCKER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


entrypoint = _load("daemon_entrypoint")
healthcheck = _load("daemon_healthcheck")


# -- the daemon image's entrypoint ---------------------------------------------------

class FakeHub:
    """Records downloads and writes a minimal snapshot, or fails like an interrupted one."""

    def __init__(self, files=("config.json", "model.safetensors", "model.gguf"), fail=False):
        self.files, self.fail, self.calls = list(files), fail, []

    def list_files(self, repo_id, revision, token):
        return self.files

    def download(self, **kw):
        self.calls.append(kw)
        Path(kw["local_dir"], "config.json").write_text("{}")
        if self.fail:
            raise OSError("connection reset")
        return kw["local_dir"]


def test_entrypoint_downloads_into_an_empty_dir_once(tmp_path):
    hub = FakeHub()
    env = {"SQLCODER_HUB_ID": "defog/sqlcoder-7b-2", "SQLCODER_HUB_REVISION": "abc123", "HF_TOKEN": "hf_x"}
    kw = dict(required=True, download=hub.download, list_files=hub.list_files)
    assert entrypoint.ensure_weights(tmp_path, env, **kw) == "empty"
    (call,) = hub.calls
    assert call["repo_id"] == "defog/sqlcoder-7b-2" and call["revision"] == "abc123" and call["token"] == "hf_x"
    assert "*.safetensors" in call["allow_patterns"] and "*.bin" not in call["allow_patterns"]
    assert entrypoint.model_state(tmp_path) == "complete"
    assert entrypoint.ensure_weights(tmp_path, env, **kw) == "complete"
    assert len(hub.calls) == 1


def test_entrypoint_resumes_an_interrupted_download(tmp_path):
    env = {"SQLCODER_HUB_ID": "defog/sqlcoder-7b-2"}
    with pytest.raises(OSError):
        entrypoint.ensure_weights(tmp_path, env, required=True, download=FakeHub(fail=True).download,
                                  list_files=FakeHub().list_files)
    # config.json is there, but the marker says the snapshot is not whole.
    assert entrypoint.model_state(tmp_path) == "partial"
    with pytest.raises(entrypoint.WeightsError):
        entrypoint.ensure_weights(tmp_path, {}, required=False)
    hub = FakeHub()
    assert entrypoint.ensure_weights(tmp_path, env, required=True, download=hub.download,
                                     list_files=hub.list_files) == "partial"
    assert entrypoint.model_state(tmp_path) == "complete"


def test_entrypoint_token_file_and_bin_only_repositories(tmp_path):
    token = tmp_path / "token"
    token.write_text("hf_from_file\n")
    hub = FakeHub(files=["config.json", "pytorch_model-00001-of-00002.bin", "tokenizer.model"])
    entrypoint.ensure_weights(tmp_path / "m", {"SQLCODER_HUB_ID": "x/y", "HF_TOKEN_FILE": str(token)},
                              required=True, download=hub.download, list_files=hub.list_files)
    assert hub.calls[0]["token"] == "hf_from_file"
    assert "*.bin" in hub.calls[0]["allow_patterns"]


def test_entrypoint_refuses_a_dir_it_cannot_use(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "execvp", lambda *a: pytest.fail("must not start the daemon"))
    env = {"SQLCODER_MODEL_DIR": str(tmp_path)}
    assert entrypoint.main(["--model", str(tmp_path)], env) == 78
    assert "set SQLCODER_HUB_ID" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("not a model")
    assert entrypoint.main([f"--model={tmp_path}"], env) == 78
    assert "no config.json" in capsys.readouterr().err


def test_entrypoint_execs_the_daemon_with_the_containers_arguments(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(os, "execvp", lambda file, argv: seen.append((file, argv)))
    (tmp_path / "config.json").write_text("{}")
    env = {"SQLCODER_MODEL_DIR": str(tmp_path)}
    entrypoint.main(["--model", str(tmp_path), "--quantize", "int8"], env)
    # Another model (a hub id the daemon loads itself) leaves an empty /models alone.
    entrypoint.main(["--model", "defog/sqlcoder-7b-2"], {"SQLCODER_MODEL_DIR": str(tmp_path / "empty")})
    assert seen == [("sqlcoder-daemon", ["sqlcoder-daemon", "--model", str(tmp_path), "--quantize", "int8"]),
                    ("sqlcoder-daemon", ["sqlcoder-daemon", "--model", "defog/sqlcoder-7b-2"])]


# -- the daemon image's healthcheck ------------------------------------------------------

def serve_once(path: Path, reply: bytes) -> threading.Thread:
    """A one-connection stand-in daemon that answers whatever it is sent with ``reply``."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def run():
        with server:
            conn, _ = server.accept()
            with conn:
                request = json.loads(conn.makefile("rb").readline())
                assert request == {"v": 1, "id": "healthcheck", "op": "status"}
                conn.sendall(reply)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("reply, healthy, shown", [
    ({"v": 1, "id": "healthcheck", "ok": True, "status": {"state": "ready", "model": "m", "device": "cuda:0"}},
     True, "state=ready model=m device=cuda:0"),
    ({"v": 1, "id": "healthcheck", "ok": True, "status": {"state": "draining"}}, False, "state=draining"),
    ({"v": 1, "id": "healthcheck", "ok": False, "error": {"code": "forbidden", "message": "uid 5"}},
     False, "forbidden: uid 5"),
])
def test_healthcheck_reads_the_daemons_status(tmp_path, reply, healthy, shown):
    path = tmp_path / "d.sock"
    thread = serve_once(path, json.dumps(reply).encode() + b"\n")
    ok, line = healthcheck.probe(str(path))
    thread.join(5)
    assert ok is healthy and shown in line


def test_healthcheck_without_a_socket_is_unhealthy(tmp_path):
    ok, line = healthcheck.probe(str(tmp_path / "missing.sock"))
    assert not ok and "cannot reach" in line


# -- systemd -------------------------------------------------------------------------

def unit_directives(text: str) -> dict[str, list[str]]:
    """Directive -> values in order (systemd allows a key more than once)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_is_hardened_and_agrees_with_the_example_config():
    from sqlcoder_daemon.settings import load_settings

    d = unit_directives((DOCKER / "sqlcoder-daemon.service").read_text())
    expected = {
        "User": "sqlcoder", "Group": "sqlcoder", "SupplementaryGroups": "postgres",
        "RuntimeDirectory": "sqlcoder", "RuntimeDirectoryMode": "0755", "ProtectSystem": "strict",
        "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "Restart": "on-failure", "DevicePolicy": "closed",
    }
    assert {k: d.get(k, [None])[-1] for k in expected} == expected
    assert "char-nvidia* rw" in d["DeviceAllow"]
    assert d["ReadOnlyPaths"] and d["ReadWritePaths"] == ["/var/cache/sqlcoder"]
    assert "PrivateDevices" not in d and "MemoryDenyWriteExecute" not in d  # both would break CUDA

    exec_start = shlex.split(d["ExecStart"][0])
    settings = load_settings(exec_start[1:] if exec_start[1:3] != ["--config", "/etc/sqlcoder/sqlcoder-daemon.toml"]
                             else ["--config", str(DOCKER / "sqlcoder-daemon.toml")])
    assert Path(settings.socket).parent == Path("/run") / d["RuntimeDirectory"][0]
    assert settings.socket_group in d["SupplementaryGroups"][0].split()
    assert "postgres" in settings.allow_user
    assert settings.model.startswith(d["ReadOnlyPaths"][0].lstrip("-"))
    stop = int(d["TimeoutStopSec"][0].rstrip("s"))
    assert stop > settings.drain_timeout_s


@pytest.fixture
def unit_with_stub_daemon(tmp_path) -> Path:
    """The unit, its ExecStart pointed at a stub: verify checks that the command exists."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    stub = tmp_path / "sqlcoder-daemon"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    unit = tmp_path / "sqlcoder-daemon.service"
    unit.write_text((DOCKER / "sqlcoder-daemon.service").read_text()
                    .replace("/opt/sqlcoder/bin/sqlcoder-daemon", str(stub)))
    return unit


def test_unit_passes_systemd_analyze_verify(unit_with_stub_daemon):
    r = subprocess.run(["systemd-analyze", "verify", str(unit_with_stub_daemon)], capture_output=True, text=True)
    # verify exits 0 on unknown keys and bad values too; it only warns.
    assert r.returncode == 0 and r.stderr == "" and r.stdout == "", r.stderr


def test_unit_exposure_is_low(unit_with_stub_daemon):
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit_with_stub_daemon)],
                       capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    # systemd's scale: 10 is unprotected; below 2 it calls "OK" (an ordinary distro unit is 9+).
    assert float(m.group(1)) < 2.0
