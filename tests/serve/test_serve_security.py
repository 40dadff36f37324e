"""Authentication, the public-address rule, per-token concurrency, and TLS."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from serve_wire import call, fim_body

from engine.remote import RemoteEngine, RemoteError
from engine.serve import main
from engine.serve.app import ServeConfig
from engine.serve.server import ServeConfigError, check_config, is_loopback

TOKEN = "s3cret-token"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "gpu-box.example.com", ""])
def test_refuses_a_non_loopback_host_without_a_token(host: str) -> None:
    with pytest.raises(ServeConfigError, match="without a bearer token"):
        check_config(ServeConfig(host=host))
    check_config(ServeConfig(host=host, tokens=(TOKEN,)))  # with a token it may start


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts_need_no_token(host: str) -> None:
    assert is_loopback(host)
    check_config(ServeConfig(host=host))


def test_cli_refuses_to_start_before_loading_anything(capsys, monkeypatch) -> None:
    monkeypatch.delenv("DIFFILL_SERVE_TOKEN", raising=False)
    assert main(["--host", "0.0.0.0", "--port", "0", "--model", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "without a bearer token" in err and "--token-file" in err


def test_cli_rejects_half_configured_tls_and_empty_token_files(tmp_path: Path, capsys) -> None:
    assert main(["--tls-cert", "cert.pem", "--model", "/nonexistent"]) == 2
    assert "both --tls-cert and --tls-key" in capsys.readouterr().err
    empty = tmp_path / "tokens"
    empty.write_text("# no token here\n\n")
    assert main(["--token-file", str(empty), "--model", "/nonexistent"]) == 2
    assert "holds no token" in capsys.readouterr().err


def test_configured_token_is_required_on_every_route_but_health(make_server) -> None:
    server = make_server(tokens=(TOKEN,))
    missing = call(server.url, "POST", "/v1/fim", fim_body())
    assert missing.status == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert "bearer token" in missing.data["error"]["message"]
    assert call(server.url, "POST", "/v1/fim", fim_body(), token="wrong").status == 401
    assert call(server.url, "POST", "/v1/completions", {"prompt": "x"}, token=TOKEN[:-1]).status == 401
    assert call(server.url, "GET", "/metrics").status == 401
    assert call(server.url, "GET", "/health").status == 200
    ok = call(server.url, "POST", "/v1/fim", fim_body(), token=TOKEN)
    assert ok.status == 200 and len(ok.data["completions"]) == 1
    assert 'code="401"' in call(server.url, "GET", "/metrics", token=TOKEN).body.decode()


def test_each_token_is_its_own_client(make_server) -> None:
    server = make_server(tokens=("alice", "bob"))
    for token in ("alice", "bob"):
        assert call(server.url, "POST", "/v1/fim", fim_body(), token=token).status == 200


def test_concurrent_requests_per_token_over_the_limit_get_429(make_server) -> None:
    server = make_server(max_concurrent_per_token=1)
    scheduler = server.app.scheduler
    scheduler.pause()
    replies = []
    first = threading.Thread(target=lambda: replies.append(call(server.url, "POST", "/v1/fim", fim_body())))
    first.start()
    assert scheduler.wait_until(lambda: scheduler.queue_depth == 1, timeout=20)
    second = call(server.url, "POST", "/v1/fim", fim_body())
    assert second.status == 429 and "limit 1" in second.data["error"]["message"]
    scheduler.resume()
    first.join(timeout=30)
    assert [r.status for r in replies] == [200]
    assert call(server.url, "POST", "/v1/fim", fim_body()).status == 200  # the slot was given back


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    out = tmp_path_factory.mktemp("tls")
    cert, key = out / "cert.pem", out / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_round_trip_with_the_servers_certificate(make_server, certificate) -> None:
    cert, key = certificate
    server = make_server(tls_cert=str(cert), tls_key=str(key), tokens=(TOKEN,))
    assert server.url.startswith("https://")
    with RemoteEngine(server.url, token=TOKEN, ca_file=str(cert)) as remote:
        assert len(remote.complete("x = ", "\n", language="python", canvas_length=8, num_candidates=2)) == 2
    # The system's CAs do not know a self-signed certificate.
    with RemoteEngine(server.url, token=TOKEN) as untrusted, pytest.raises(RemoteError, match="TLS error"):
        untrusted.complete("x = ", "\n", language="python", canvas_length=8, num_candidates=1)
