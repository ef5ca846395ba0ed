"""TLS, mutual TLS and API keys with roles, through real server processes on loopback."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from imagesim import protocol
from imagesim.channel import ChannelSecurity, open_channel
from imagesim.client.embedder_client import EmbedderClient
from imagesim.client.index_client import IndexClient
from imagesim.client.rpc import rpc_error
from imagesim.errors import (
    PermissionDenied,
    Reason,
    Unauthenticated,
    Unavailable,
)
from imagesim.types import ItemToAdd, Layout
from imagesim.v1 import index_pb2
from tests.pki import CertificateAuthority
from tests.support.cli import run_cli

DIMS = 8
ITEM = ItemToAdd("a", np.ones(DIMS, dtype=np.float32))

# What each role may do on an Index shard: method -> (call, lowest role allowed).
INDEX_CALLS = {
    "Search": (lambda c: c.search(np.ones(DIMS)), "read"),
    "Stats": (lambda c: c.stats(), "read"),
    "Contains": (lambda c: c.contains(["a"]), "read"),
    "Get": (lambda c: c.get("a"), "read"),
    "Scan": (lambda c: list(c.scan()), "read"),
    "Add": (lambda c: c.add([ITEM]), "write"),
    "AddStream": (
        lambda c: c.stub.AddStream(
            iter([index_pb2.AddStreamRequest(items=[protocol.item_message(ITEM)])]), timeout=30
        ),
        "write",
    ),
    "Remove": (lambda c: c.remove(["nothing-here"]), "write"),
    "Build": (lambda c: c.build(), "admin"),
    # the shard's own id as a one-shard layout, recorded once (then the versions differ)
    "SetLayout": (lambda c: c.set_layout(Layout(1, (c.stats().shard_id,)), 0), "admin"),
}
ORDER = ["read", "write", "admin"]


@pytest.fixture
def secure_shard(start_shard, pki):
    shard = start_shard(DIMS, *pki.server_args(), security=pki.security())
    with IndexClient(shard.address, security=pki.security("admin")) as admin:
        admin.add([ITEM])
    return shard


def call(client, method):
    fn, _ = INDEX_CALLS[method]
    try:
        return fn(client)
    except grpc.RpcError as exc:  # raw stub calls (AddStream)
        raise rpc_error(exc, client.address, "index shard") from None


@pytest.mark.parametrize("role", ORDER)
def test_each_role_may_call_what_the_issue_lists_and_nothing_more(secure_shard, pki, role):
    with IndexClient(secure_shard.address, timeout=30, security=pki.security(role)) as client:
        for method, (_, needed) in INDEX_CALLS.items():
            if ORDER.index(role) >= ORDER.index(needed):
                call(client, method)
            else:
                with pytest.raises(PermissionDenied) as denied:
                    call(client, method)
                assert denied.value.reason == Reason.ROLE_REQUIRED.value
                assert denied.value.metadata == {"role": needed}
                assert f"{method} needs the '{needed}' role; this key has '{role}'" in str(
                    denied.value
                )


@pytest.mark.parametrize("key", [None, "0123456789abcdef-not-a-key"])
def test_no_key_or_an_unknown_key_is_unauthenticated(secure_shard, pki, key):
    security = ChannelSecurity(tls_ca=pki.ca, api_key=key)
    with IndexClient(secure_shard.address, timeout=30, security=security) as client:
        for method in ("Stats", "Search", "Add", "AddStream", "Build"):
            with pytest.raises(Unauthenticated) as refused:
                call(client, method)
            assert refused.value.reason == Reason.UNAUTHENTICATED_CALLER.value
            assert key is None or key not in str(refused.value)
    assert pki.keys["read"] not in secure_shard.log_text()
    assert pki.keys["admin"] not in secure_shard.log_text()


def test_health_is_open_and_reflection_needs_the_read_role(secure_shard, pki):
    def services(security: ChannelSecurity) -> list[str]:
        with open_channel(secure_shard.address, security=security) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            replies = stub.ServerReflectionInfo(iter([request]), timeout=30)
            return [s.name for r in replies for s in r.list_services_response.service]

    with open_channel(secure_shard.address, security=pki.security()) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=30
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as refused:
        services(pki.security())
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "imagesim.v1.Index" in services(pki.security("read"))


def test_reflection_can_be_turned_off(start_shard):
    shard = start_shard(DIMS, "--no-reflection")
    with open_channel(shard.address, security=ChannelSecurity()) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as missing:
            list(stub.ServerReflectionInfo(iter([request]), timeout=30))
    assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_plaintext_client_and_wrong_ca_fail_cleanly(secure_shard, pki):
    for security in (
        ChannelSecurity(),  # plaintext against TLS
        ChannelSecurity(tls_ca=pki.other_ca, api_key=pki.keys["read"]),  # does not trust it
    ):
        client = IndexClient(secure_shard.address, timeout=30, security=security)
        expected = f"cannot reach index shard at {client.address}"
        with client, pytest.raises(Unavailable, match=expected):
            client.stats()
    # the CLI: one line naming the server, exit code 1
    result = run_cli("stats", "--shards", secure_shard.address, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"imagesim: error: UNAVAILABLE ({secure_shard.address})")
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_flags_and_environment_carry_tls_and_key(secure_shard, pki):
    flags = ["--tls-ca", str(pki.ca), "--api-key", pki.keys["read"]]
    result = run_cli("stats", "--json", "--shards", secure_shard.address, *flags)
    assert json.loads(result.stdout)["total"]["count"] == 1
    denied = run_cli("build", "--shards", secure_shard.address, *flags, check=False)
    assert denied.returncode == 1 and "needs the 'admin' role" in denied.stderr
    env = {"IMAGESIM_TLS_CA": str(pki.ca), "IMAGESIM_API_KEY": pki.keys["admin"]}
    built = run_cli("build", "--shards", secure_shard.address, env=env)
    assert "generation 1" in built.stdout


def test_mutual_tls_refuses_clients_without_a_certificate_from_the_ca(start_shard, pki):
    shard = start_shard(
        DIMS, *pki.server_args("--tls-client-ca", str(pki.ca)), security=pki.mutual()
    )
    strangers = [
        pki.security("admin"),  # no client certificate
        pki.security("admin", tls_cert=pki.stranger.cert, tls_key=pki.stranger.key),
    ]
    for security in strangers:
        client = IndexClient(shard.address, timeout=30, security=security)
        with client, pytest.raises(Unavailable):
            client.stats()
    with IndexClient(shard.address, timeout=30, security=pki.mutual("read")) as client:
        assert client.stats().count == 0
        with pytest.raises(PermissionDenied):  # the certificate does not replace the key
            client.add([ITEM])


def test_embedder_methods_need_the_read_role(secure_embedder, pki, photos):
    image = (photos / "real" / "rocket.jpg").read_bytes()
    with EmbedderClient(secure_embedder.address, 60, pki.security("read")) as embedder:
        assert embedder.info().model == "InceptionV3"
        assert embedder.embed(image).shape == (2048,)
        [result] = list(embedder.embed_stream([("r", image)]))
        assert result.vector is not None and result.vector.shape == (2048,)
    with EmbedderClient(secure_embedder.address, 60, pki.security()) as anonymous:
        with pytest.raises(Unauthenticated):
            anonymous.info()
        with pytest.raises(Unauthenticated):
            list(anonymous.embed_stream([("r", image)]))


def test_plaintext_api_key_is_only_sent_to_loopback():
    security = ChannelSecurity(api_key="0123456789abcdef0123")
    client = IndexClient("10.255.255.1:50061", timeout=5, security=security)
    with client, pytest.raises(Unavailable, match="cannot reach"):
        client.stats()


@pytest.mark.parametrize(
    "extra, missing",
    [
        ([], "without TLS (--tls-cert/--tls-key) and caller authentication"),
        (["--tls-cert", "{cert}", "--tls-key", "{key}"], "without caller authentication"),
    ],
)
def test_a_non_loopback_bind_without_tls_and_keys_refuses_to_start(tmp_path, pki, extra, missing):
    extra = [a.format(cert=pki.server.cert, key=pki.server.key) for a in extra]
    server = [sys.executable, "-m", "imagesim.index_server.main", "--host", "0.0.0.0"]
    result = subprocess.run(
        [*server, "--port", "0", "--data", str(tmp_path / "d"), "--dims", "8", *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert missing in line and "--insecure" in line
    assert not (tmp_path / "d").exists()  # refused before touching anything


def test_renewed_certificate_files_apply_without_a_restart(start_shard, tmp_path, pki):
    live = tmp_path / "live"
    live.mkdir()
    (live / "server.crt").write_bytes(pki.server.cert.read_bytes())
    (live / "server.key").write_bytes(pki.server.key.read_bytes())
    shard = start_shard(
        DIMS,
        "--tls-cert",
        str(live / "server.crt"),
        "--tls-key",
        str(live / "server.key"),
        security=pki.security(),
    )
    with IndexClient(shard.address, timeout=30, security=pki.security()) as client:
        assert client.stats().count == 0
    renewed = CertificateAuthority(tmp_path / "new-ca", "the new CA").issue("server", "localhost")
    for name, source in (("server.key", renewed.key), ("server.crt", renewed.cert)):
        (live / f".{name}").write_bytes(source.read_bytes())
        (live / f".{name}").replace(live / name)
    new_ca = tmp_path / "new-ca" / "ca.crt"
    with IndexClient(shard.address, timeout=30, security=ChannelSecurity(tls_ca=new_ca)) as client:
        assert client.stats().count == 0  # a new connection gets the renewed certificate
    old = IndexClient(shard.address, timeout=30, security=pki.security())
    with old, pytest.raises(Unavailable):
        old.stats()
    assert shard.process.poll() is None
