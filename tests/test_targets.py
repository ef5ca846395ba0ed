"""Embedder addresses -> gRPC targets (one server, replicas, dns:///), the service config that
balances them, and the servers' connection-age options."""

from __future__ import annotations

import json

import pytest

from imagesim.channel import parse_target, service_config
from imagesim.serving.settings import ServerSettings


@pytest.mark.parametrize(
    ("address", "uri", "replicas"),
    [
        ("127.0.0.1:50051", "127.0.0.1:50051", 1),
        ("localhost:50051", "localhost:50051", 1),
        ("127.0.0.1:1, 127.0.0.2:2", "ipv4:127.0.0.1:1,127.0.0.2:2", 2),
        ("[::1]:1,[::1]:2", "ipv6:[::1]:1,[::1]:2", 2),
        ("dns:///embedder.imagesim.svc:50051", "dns:///embedder.imagesim.svc:50051", None),
        ("ipv4:10.0.0.1:1,10.0.0.2:1,10.0.0.3:1", "ipv4:10.0.0.1:1,10.0.0.2:1,10.0.0.3:1", 3),
    ],
)
def test_addresses_become_targets(address, uri, replicas):
    target = parse_target(address)
    assert (target.uri, target.replicas) == (uri, replicas)
    assert target.balanced == (replicas != 1)


def test_host_names_in_a_list_are_resolved_to_one_address_family():
    target = parse_target("localhost:1,127.0.0.1:2")
    assert target.uri in ("ipv4:127.0.0.1:1,127.0.0.1:2", "ipv6:[::1]:1,[::1]:2")
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_target("127.0.0.1,127.0.0.2")


def test_balanced_channels_use_round_robin_and_keep_the_retry_policy():
    plain, balanced = json.loads(service_config()), json.loads(service_config(balanced=True))
    assert "loadBalancingConfig" not in plain
    assert balanced["loadBalancingConfig"] == [{"round_robin": {}}]
    assert balanced["methodConfig"] == plain["methodConfig"]
    [method] = balanced["methodConfig"]
    retried = {(n["service"], n["method"]) for n in method["name"]}
    # Embed and Info are idempotent and retried; a stream is never retried by the channel.
    assert {("imagesim.v1.Embedder", "Embed"), ("imagesim.v1.Embedder", "Info")} <= retried
    assert ("imagesim.v1.Embedder", "EmbedStream") not in retried
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


def test_connection_age_options():
    assert ServerSettings().connection_options() == [("grpc.max_connection_age_ms", 300_000)]
    assert ServerSettings(max_connection_age=0).connection_options() == []
    assert ServerSettings(
        max_connection_age=60, max_connection_age_grace=5
    ).connection_options() == [
        ("grpc.max_connection_age_ms", 60_000),
        ("grpc.max_connection_age_grace_ms", 5_000),
    ]
