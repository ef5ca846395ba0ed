"""Closed sets of the domain, as the core code uses them (the proto has the same enums; the
wire conversions live in imagesim.protocol). Values are the lower-case names users type."""

from __future__ import annotations

from enum import Enum


class Metric(str, Enum):
    """Distance metric of a shard (Annoy's definitions; smaller is closer)."""

    ANGULAR = "angular"
    EUCLIDEAN = "euclidean"
    MANHATTAN = "manhattan"


class Space(str, Enum):
    """A vector space: the model's full output or the reducer's smaller space."""

    FULL = "full"
    REDUCED = "reduced"


class Precision(str, Enum):
    """Arithmetic a model runs in."""

    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    # Weights and activations quantized to 8-bit integers (OpenVINO IR quantized by NNCF,
    # calibrated on photos): its vectors differ more from float32's than bfloat16's do, so a
    # collection never mixes them with float vectors (client.collection.check_model).
    INT8 = "int8"


class Runtime(str, Enum):
    """The inference runtime executing the model."""

    TENSORFLOW = "tensorflow"
    OPENVINO = "openvino"


def parse_enum(cls: type[Enum], value: object, what: str) -> Enum:
    """`value` (an instance or its string value) as a member of `cls`; ValueError naming the
    choices otherwise."""
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(str(m.value) for m in cls)
        raise ValueError(f"{what} must be one of {choices}, not {value!r}") from None
