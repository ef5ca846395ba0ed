"""The Embedder core in-process (no gRPC): embed_many keeps input order, gives each bad image
its own error, and a consumer that stops early does not leave the stream hanging."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from imagesim.embedder_server.batcher import AdaptiveBatcher
from imagesim.embedder_server.embedder import Embedder, EmbedItem
from imagesim.embedder_server.preprocess import ImageLimits
from imagesim.embedder_server.runtimes.select import load_runtime
from imagesim.errors import FailedPrecondition, InvalidArgument, Reason
from tests.conftest import jpeg_bytes, synthetic_image


@pytest.fixture(scope="module")
def core(model_cache):
    runtime = load_runtime("none", "openvino", "float32", model_cache)
    batcher = AdaptiveBatcher(runtime, max_batch_size=8, max_batch_time=0.002)
    embedder = Embedder(runtime, batcher, ImageLimits(), decode_threads=2)
    yield embedder
    embedder.close()
    batcher.close()


def test_embed_many_keeps_order_and_reports_bad_items_alone(core):
    images = {f"img{n}": jpeg_bytes(synthetic_image(n)) for n in range(12)}
    items = [EmbedItem(key, data) for key, data in images.items()]
    items.insert(3, EmbedItem("empty", b""))
    items.insert(7, EmbedItem("junk", b"not an image"))
    items.append(EmbedItem("no-reducer", images["img0"], "reduced"))
    outcomes = list(core.embed_many(iter(items), window=4))
    assert [o.id for o in outcomes] == [i.id for i in items]
    errors = {o.id: o.error for o in outcomes if o.error is not None}
    assert set(errors) == {"empty", "junk", "no-reducer"}
    assert isinstance(errors["empty"], InvalidArgument)
    assert errors["empty"].reason == Reason.IMAGE_EMPTY.value
    assert errors["junk"].reason == Reason.IMAGE_UNDECODABLE.value
    assert isinstance(errors["no-reducer"], FailedPrecondition)
    assert errors["no-reducer"].reason == Reason.SPACE_NOT_OFFERED.value
    vectors = {o.id: o.vector for o in outcomes if o.error is None}
    for key, data in images.items():  # batched in a stream = embedded alone
        np.testing.assert_allclose(vectors[key], core.embed(data), rtol=1e-4, atol=1e-6)


def test_a_consumer_that_stops_early_releases_the_reader(core):
    reader_done = threading.Event()

    def endless():
        try:
            n = 0
            while n < 1000:
                yield EmbedItem(str(n), jpeg_bytes(synthetic_image(n % 5)))
                n += 1
        finally:
            reader_done.set()

    stream = core.embed_many(endless(), window=2)
    first = [next(stream) for _ in range(3)]
    assert [o.id for o in first] == ["0", "1", "2"]
    stream.close()  # the caller went away
    assert reader_done.wait(60)  # the reader stopped instead of filling the window forever
    # Decodes already started finish and give their pixels back to the budget.
    for _ in range(600):
        if core.budget.in_use == 0:
            break
        time.sleep(0.05)
    assert core.budget.in_use == 0
