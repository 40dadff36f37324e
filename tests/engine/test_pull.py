"""`diffill pull` fetches a release from a Hub-compatible endpoint (a local stand-in here: no network), only the
files the engine reads, checks that it loads and prints its --model path; a missing repository, revision or
network is one clear line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.adapters.families import OPEN_DCODER
from engine.pull import PullError, pull
from tests.engine.adapter_fixtures import tiny_checkpoint
from tests.engine.hub_server import COMMIT, HubServer

REPO = "fredzzp/open-dcoder-tiny"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Open-dCoder release as the Hub holds it, with the files pull must leave behind."""
    directory = tiny_checkpoint(tmp_path_factory.mktemp("hub") / "repo", OPEN_DCODER, seed=3, max_shard_bytes=60_000)
    (directory / "pytorch_model.bin").write_bytes(b"pickle")
    (directory / "README.md").write_text("# model card\n")
    return directory


def run_pull(hub_url: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"HF_ENDPOINT": hub_url, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    command = [sys.executable, "-m", "engine.cli", "pull", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_pull_downloads_only_what_the_engine_reads_checks_it_loads_and_prints_the_path(
    release: Path, tmp_path: Path
) -> None:
    with HubServer({REPO: release}) as hub:
        target = tmp_path / "models" / "dcoder"
        result = run_pull(hub.url, REPO, "--dir", str(target), "--device", "cpu", tmp_path=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(target)  # stdout carries only the --model path
        assert "loaded" in result.stderr and "open-dcoder" in result.stderr
        fetched = {p.name for p in target.iterdir() if p.is_file()}
        shards = {p.name for p in release.glob("model-*.safetensors")}
        assert len(shards) > 1 and shards | {"config.json", "tokenizer.json", "tokenizer_config.json"} <= fetched
        assert "model.safetensors.index.json" in fetched and not {"pytorch_model.bin", "README.md"} & fetched
        assert not any("pytorch_model.bin" in r or "README" in r for r in hub.requests)
        assert f"GET /api/models/{REPO}/revision/main" in hub.requests

        again = run_pull(hub.url, REPO, "--dir", str(target), "--revision", COMMIT, "--no-check", tmp_path=tmp_path)
        assert again.returncode == 0 and again.stdout.strip() == str(target)  # already there: nothing re-fetched
        assert sum(r.startswith("GET /fredzzp") for r in hub.requests) == len(shards) + 4


def test_a_connection_lost_mid_file_is_retried_to_an_intact_copy(release: Path, tmp_path: Path) -> None:
    shard = sorted(p.name for p in release.glob("model-*.safetensors"))[0]
    with HubServer({REPO: release}, cut_once={shard: 20_000}) as hub:
        target = pull(REPO, directory=tmp_path / "m", endpoint=hub.url)
        assert sum(r.startswith(f"GET /{REPO}/resolve/{COMMIT}/{shard}") for r in hub.requests) == 2
    assert (target / shard).read_bytes() == (release / shard).read_bytes()


def test_a_missing_repository_or_revision_an_unreachable_endpoint_and_a_bad_id_are_one_line_errors(
    release: Path, tmp_path: Path
) -> None:
    with HubServer({REPO: release}) as hub:
        with pytest.raises(PullError) as missing:
            pull("nobody/nothing", directory=tmp_path / "x", endpoint=hub.url)
        assert str(missing.value) == f"no repository nobody/nothing on {hub.url} (a private one needs HF_TOKEN)"
        with pytest.raises(PullError, match=r"has no revision 'v9' on http://127\.0\.0\.1"):
            pull(REPO, revision="v9", directory=tmp_path / "y", endpoint=hub.url)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PullError, match=rf"cannot reach http://127\.0\.0\.1:{port} \(\w+\); check the network"):
        pull(REPO, directory=tmp_path / "z", endpoint=f"http://127.0.0.1:{port}")
    with pytest.raises(PullError, match="expected ORG/NAME"):
        pull("../etc", directory=tmp_path / "w")
    assert not any((tmp_path / d).exists() for d in "xyzw")
