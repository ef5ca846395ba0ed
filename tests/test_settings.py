"""Server flags: command line over environment over built-in defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagesim.embedder_server.main import parse_args as embedder_args
from imagesim.index_server.main import parse_args as index_args


def test_environment_supplies_defaults_and_flags_win(monkeypatch):
    monkeypatch.setenv("IMAGESIM_INDEX_DATA", "/srv/shard")
    monkeypatch.setenv("IMAGESIM_INDEX_DIMS", "256")
    monkeypatch.setenv("IMAGESIM_INDEX_SHARD_ID", "imagesim-index-1")
    monkeypatch.setenv("IMAGESIM_INDEX_PORT", "7000")
    args = index_args(["--port", "7001"])
    assert (args.data, args.dims, args.shard_id, args.port) == (
        Path("/srv/shard"),
        256,
        "imagesim-index-1",
        7001,
    )
    assert (args.host, args.metric, args.trees) == ("127.0.0.1", "angular", 100)


def test_embedder_defaults():
    args = embedder_args([])
    assert (args.weights, args.runtime, args.precision, args.max_batch_size, args.port) == (
        "imagenet",
        "auto",
        "auto",
        8,
        50051,
    )
    assert args.max_batch_time_ms is None  # auto: from the measured batch-1 time
    assert args.max_message_mb == 64.0 and args.reducer is None


def test_security_and_stream_flags(monkeypatch):
    args = index_args(["--data", "/srv/shard"])
    assert (args.max_streams, args.stream_idle_timeout, args.max_concurrent_rpcs) == (4, 60.0, 0)
    assert (args.insecure, args.no_reflection, args.metrics_port, args.api_keys) == (
        False,
        False,
        None,
        None,
    )
    monkeypatch.setenv("IMAGESIM_INDEX_INSECURE", "1")
    monkeypatch.setenv("IMAGESIM_INDEX_METRICS_PORT", "9161")
    args = index_args(["--data", "/srv/shard"])
    assert args.insecure is True and args.metrics_port == 9161


def test_help_shows_default_and_variable_alike(capsys):
    with pytest.raises(SystemExit):
        index_args(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "MiB [default 64; IMAGESIM_INDEX_MAX_MESSAGE_MB]" in shown
    assert "longest key, bytes of UTF-8 [default 1024; IMAGESIM_INDEX_MAX_KEY_BYTES]" in shown
    assert "--data DATA directory holding" in shown and "[IMAGESIM_INDEX_DATA]" in shown
    assert "--port PORT port to bind, 0 for any free port [default 50061;" in shown


def test_server_settings_from_one_declaration(monkeypatch):
    from imagesim.serving.settings import server_settings

    monkeypatch.setenv("IMAGESIM_INDEX_MAX_MESSAGE_MB", "8")
    monkeypatch.setenv("IMAGESIM_INDEX_NO_REFLECTION", "yes")
    settings = server_settings(index_args(["--data", "/srv/shard", "--grace", "3"]))
    assert (settings.max_message_bytes, settings.grace_seconds) == (8 * 1024 * 1024, 3.0)
    assert (settings.port, settings.reflection, settings.tls) == (50061, False, None)


def test_one_declaration_sets_the_limit_stats_reports(monkeypatch):
    from imagesim.index_server.settings import ShardConfig
    from imagesim.settings_base import from_args, values
    from imagesim.v1 import index_pb2

    monkeypatch.setenv("IMAGESIM_INDEX_MAX_KEY_BYTES", "77")
    args = index_args(["--data", "/srv/shard", "--max-k", "5", "--metric", "euclidean"])
    config = from_args(ShardConfig, args)
    assert (config.limits.max_key_bytes, config.limits.max_k, config.metric.value) == (
        77,
        5,
        "euclidean",
    )
    # every declared limit is a field of Stats' IndexLimits, under the same name
    reported = index_pb2.IndexLimits(**values(config.limits))
    assert (reported.max_key_bytes, reported.max_k) == (77, 5)


def test_embedder_limits_in_flag_units(monkeypatch):
    from imagesim.embedder_server.settings import EmbedderSettings
    from imagesim.settings_base import from_args

    monkeypatch.setenv("IMAGESIM_EMBEDDER_MAX_BATCH_TIME_MS", "3")
    settings = from_args(EmbedderSettings, embedder_args(["--decode-budget-mpx", "50"]))
    assert settings.limits.decode_budget_pixels == 50_000_000
    assert settings.limits.max_bytes == 32 * 1024 * 1024
    assert settings.max_batch_time_ms == 3.0


def test_web_settings_and_its_backend_security(monkeypatch, tmp_path):
    from imagesim.web.settings import LOOPBACK_HOST_NAMES, parse_args

    monkeypatch.setenv("IMAGESIM_WEB_SHARDS", "a:1, b:2")
    monkeypatch.setenv("IMAGESIM_WEB_MAX_UPLOAD_MB", "2")
    monkeypatch.setenv("IMAGESIM_TLS_CA", "/etc/imagesim/ca.crt")
    settings = parse_args(["--images-root", str(tmp_path), "--max-k", "5"])
    assert settings.shards == ("a:1", "b:2") and settings.max_upload_bytes == 2 * 1024 * 1024
    assert (settings.default_k, settings.allowed_hosts) == (5, LOOPBACK_HOST_NAMES)
    # the calls to the services: TLS from the client's variables, held by the settings
    assert settings.backend.tls_ca == Path("/etc/imagesim/ca.crt")
    assert settings.tls is None and settings.url == "http://127.0.0.1:8080"


def test_client_certificate_flags_are_named_for_what_they_are(monkeypatch, capsys):
    """The CLI's client certificate is --tls-client-cert/--tls-client-key (the servers'
    --tls-cert is their own certificate); the old names still work and say so."""
    from imagesim.channel import ChannelSecurity
    from imagesim.client.cli import build_parser
    from imagesim.client.cli.security import security_from_args

    for name in ("IMAGESIM_TLS_CLIENT_CERT", "IMAGESIM_TLS_CERT", "IMAGESIM_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)
    parser = build_parser()
    new = parser.parse_args(["stats", "--tls-client-cert", "c.pem", "--tls-client-key", "k.pem"])
    assert (security_from_args(new).tls_cert, security_from_args(new).tls_key) == (
        Path("c.pem"),
        Path("k.pem"),
    )
    assert "deprecated" not in capsys.readouterr().err
    old = parser.parse_args(["stats", "--tls-cert", "c.pem", "--tls-key", "k.pem"])
    assert security_from_args(old) == security_from_args(new)
    err = capsys.readouterr().err
    assert "--tls-cert is deprecated: use --tls-client-cert" in err
    assert "--tls-key is deprecated: use --tls-client-key" in err
    # The variables: the new name wins, the old one is read when it is unset, empty is unset.
    env = {"IMAGESIM_TLS_CERT": "old.pem", "IMAGESIM_TLS_CLIENT_KEY": "", "IMAGESIM_TLS_KEY": ""}
    assert ChannelSecurity.from_env(env).tls_cert == Path("old.pem")
    assert ChannelSecurity.from_env(env).tls_key is None
    env["IMAGESIM_TLS_CLIENT_CERT"] = "new.pem"
    assert ChannelSecurity.from_env(env).tls_cert == Path("new.pem")
