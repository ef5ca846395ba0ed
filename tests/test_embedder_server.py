"""The Embedder as a real process (untrained weights): vectors, bad input, limits, health."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from PIL import Image

from imagesim.client.rpc import error_info
from imagesim.enums import Precision, Runtime, Space
from imagesim.errors import FailedPrecondition, InvalidArgument, Reason
from imagesim.v1 import embedder_pb2, embedder_pb2_grpc
from tests.conftest import jpeg_bytes, synthetic_image

MiB = 1024 * 1024


def raw_stub(address: str, max_bytes: int = 200 * MiB) -> embedder_pb2_grpc.EmbedderStub:
    """A stub whose channel lets big messages out, to test the server's own limits."""
    channel = grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_send_message_length", max_bytes),
            ("grpc.max_receive_message_length", max_bytes),
        ],
    )
    return embedder_pb2_grpc.EmbedderStub(channel)


def test_info_reports_untrained_model(embedder):
    info = embedder.info()
    assert info.model == "InceptionV3" and info.weights == "none" and info.untrained
    assert [(s.space, s.dimension) for s in info.spaces] == [(Space.FULL, 2048)]
    assert (info.input_width, info.input_height) == (299, 299)
    assert len(info.model_fingerprint) == 64
    # runtime auto on a CPU OpenVINO supports; precision pinned by the fixture
    assert (info.runtime, info.precision) == (Runtime.OPENVINO, Precision.FLOAT32)
    assert info.limits.max_bytes == 32 * 1024 * 1024 and info.limits.max_pixels > 0
    assert info.limits.decode_budget_pixels == 200_000_000
    assert info.limits.max_decoded_bytes == 128 * 1024 * 1024
    assert info.limits.decode_wait_seconds == 2
    # batch time auto: a quarter of the measured batch-1 time, at most 5 ms
    assert info.max_batch_size == 8 and 0 < info.max_batch_time <= 0.005
    assert any("runtime auto: OpenVINO supports this CPU" in note for note in info.notes)


def test_embedding_is_2048_d_deterministic_and_batch_independent(embedder, photos):
    data = (photos / "real" / "astronaut.jpg").read_bytes()
    first = embedder.embed(data)
    assert first.shape == (2048,) and first.dtype == np.float32 and np.isfinite(first).all()
    np.testing.assert_array_equal(embedder.embed(data), first)
    # The same bytes riding in a batch with other images give the same vector (to float32
    # rounding: oneDNN may sum in another order for another batch size).
    others = [jpeg_bytes(synthetic_image(s)) for s in range(7)]
    streamed = list(embedder.embed_stream([(str(i), d) for i, d in enumerate([*others, data])]))
    np.testing.assert_allclose(streamed[-1].vector, first, rtol=1e-5, atol=1e-7)


def test_same_vector_in_a_fresh_process(embedder, photos, tmp_path):
    """Untrained weights are seeded: another process computes the same vector."""
    image = photos / "real" / "coffee.jpg"
    script = (
        "import sys, numpy as np\n"
        "from imagesim.embedder_server.runtimes.select import load_runtime\n"
        "from imagesim.embedder_server.preprocess import ImageLimits, load_rgb\n"
        "m = load_runtime('none', precision='float32')\n"
        "x = load_rgb(open(sys.argv[1], 'rb').read(), (299, 299), ImageLimits())\n"
        "np.save(sys.argv[2], m(x[None])[0])\n"
        "print(m.info.fingerprint)\n"
    )
    out = tmp_path / "v.npy"
    result = subprocess.run(
        [sys.executable, "-c", script, str(image), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == embedder.info().model_fingerprint
    np.testing.assert_allclose(
        np.load(out), embedder.embed(image.read_bytes()), rtol=1e-5, atol=1e-7
    )


def test_greyscale_png_and_alpha_images_embed(embedder):
    for mode in ("L", "RGBA", "P"):
        buffer = io.BytesIO()
        synthetic_image(4).convert(mode).save(buffer, "PNG")
        assert embedder.embed(buffer.getvalue()).shape == (2048,)


def bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (9_000, 9_500)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: b"", Reason.IMAGE_EMPTY),
        (lambda: b"GIF89a but then garbage", Reason.IMAGE_UNDECODABLE),
        (lambda: jpeg_bytes(synthetic_image(5))[:500], Reason.IMAGE_UNDECODABLE),
        (bomb, Reason.IMAGE_TOO_MANY_PIXELS),
    ],
    ids=["empty", "garbage", "truncated", "bomb"],
)
def test_bad_images_get_invalid_argument_and_the_server_keeps_serving(embedder, make, reason):
    with pytest.raises(InvalidArgument) as caught:
        embedder.embed(make())
    assert caught.value.reason == reason.value
    assert embedder.embed(jpeg_bytes(synthetic_image(6))).shape == (2048,)


def test_bulk_stream_reports_bad_items_and_goes_on(embedder, photos):
    good = (photos / "real" / "rocket.jpg").read_bytes()
    items = [("a", good), ("b", b"junk"), ("c", good), ("d", b"")]
    results = list(embedder.embed_stream(items))
    assert [r.id for r in results] == ["a", "b", "c", "d"]
    assert [(r.error.code, r.error.reason) if r.error else "OK" for r in results] == [
        "OK",
        ("INVALID_ARGUMENT", "IMAGE_UNDECODABLE"),
        "OK",
        ("INVALID_ARGUMENT", "IMAGE_EMPTY"),
    ]
    np.testing.assert_allclose(results[0].vector, results[2].vector, rtol=1e-5, atol=1e-7)


def test_reduced_space_without_reducer_is_failed_precondition(embedder, photos):
    with pytest.raises(FailedPrecondition, match="--reducer") as caught:
        embedder.embed((photos / "real" / "rocket.jpg").read_bytes(), space="reduced")
    assert caught.value.reason == Reason.SPACE_NOT_OFFERED.value


def test_message_size_limits(embedder_server):
    stub = raw_stub(embedder_server.address)
    # A 20 MB photo goes through (noise JPEG at quality 100, ~2 bytes per pixel).
    noise = np.random.default_rng(0).integers(0, 256, (3000, 3800, 3), dtype=np.uint8)
    big = jpeg_bytes(Image.fromarray(noise), quality=100)
    assert 20 * MiB < len(big) < 30 * MiB
    reply = stub.Embed(embedder_pb2.EmbedRequest(image=big), timeout=120)
    assert reply.embedding.dimension == 2048
    # Over the image limit (32 MiB) but within the message limit: a clear INVALID_ARGUMENT.
    with pytest.raises(grpc.RpcError) as err:
        stub.Embed(embedder_pb2.EmbedRequest(image=b"\0" * (40 * MiB)), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the limit is 33,554,432 bytes" in err.value.details()
    info = error_info(rpc_status.from_call(err.value))
    assert (info.reason, dict(info.metadata)) == ("IMAGE_TOO_LARGE", {"limit": str(32 * MiB)})
    # Over the message limit (64 MiB): RESOURCE_EXHAUSTED from gRPC itself.
    with pytest.raises(grpc.RpcError) as err:
        stub.Embed(embedder_pb2.EmbedRequest(image=b"\0" * (70 * MiB)), timeout=60)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.Info(embedder_pb2.InfoRequest(), timeout=10).model == "InceptionV3"


def test_health_and_reflection(embedder_server):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with grpc.insecure_channel(embedder_server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "imagesim.v1.Embedder"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"imagesim.v1.Embedder", "grpc.health.v1.Health"} <= services


def run_embedder(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imagesim.embedder_server.main", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_missing_weights_file_exits_with_a_fix(tmp_path):
    result = run_embedder("--weights", str(tmp_path / "nope.h5"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "--weights none" in result.stderr


def test_unreachable_imagenet_weights_exit_with_a_fix(tmp_path):
    # An empty Keras cache and a dead proxy: the download fails here and on any machine.
    result = run_embedder(
        "--weights",
        "imagenet",
        env={
            "KERAS_HOME": str(tmp_path),
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "https_proxy": "http://127.0.0.1:9",
        },
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot get the ImageNet weights" in result.stderr
    assert "--weights /path/to/" in result.stderr and "--weights none" in result.stderr
    assert "SERVING imagesim" not in result.stderr
