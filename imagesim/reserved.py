"""Metadata keys imagesim writes on items itself (the `imagesim.` prefix is reserved).

Bulk adds tag each item with what made its vector, so a shard can count it (Stats.models,
Stats.embedded_by) and clients can refuse to mix models in one collection, refuse to mix
int8 vectors with float vectors of the same model, and warn when float runtimes or precisions
mix.
"""

from __future__ import annotations

from imagesim.enums import Precision

MODEL = "imagesim.model"  # the first FINGERPRINT_CHARS hex digits of the model fingerprint
EMBEDDED_BY = "imagesim.embedded_by"  # "runtime/precision", e.g. "openvino/bfloat16"
FINGERPRINT_CHARS = 16


def model_tags(fingerprint: str, runtime: str = "", precision: str = "") -> dict[str, str]:
    """The reserved keys for a vector of this model (runtime/precision when known)."""
    tags = {MODEL: fingerprint[:FINGERPRINT_CHARS]} if fingerprint else {}
    if runtime and precision:
        tags[EMBEDDED_BY] = f"{runtime}/{precision}"
    return tags


def quantized(embedded_by: str) -> bool:
    """True when an `imagesim.embedded_by` value names an int8 (quantized) model."""
    return embedded_by.rpartition("/")[2] == Precision.INT8.value
