"""The domain's closed sets are hand-written mirrors of the proto's enums (core code must not need
generated code to name a reason). This proves each mirror equal to its proto enum, so adding a
value to one side and not the other fails here, not on the wire."""

from __future__ import annotations

from enum import Enum

import pytest
from google.protobuf.descriptor import EnumDescriptor

from imagesim.enums import Metric, Precision, Runtime, Space
from imagesim.errors import Reason
from imagesim.v1 import common_pb2


def proto_names(descriptor: EnumDescriptor, prefix: str) -> set[str]:
    """The proto enum's value names without its prefix and without the UNSPECIFIED zero."""
    return {
        value.name.removeprefix(prefix)
        for value in descriptor.values
        if value.number != 0 or not value.name.endswith("UNSPECIFIED")
    }


@pytest.mark.parametrize(
    ("mirror", "descriptor", "prefix"),
    [
        (Metric, common_pb2.Metric.DESCRIPTOR, "METRIC_"),
        (Space, common_pb2.Space.DESCRIPTOR, "SPACE_"),
        (Precision, common_pb2.Precision.DESCRIPTOR, "PRECISION_"),
        (Runtime, common_pb2.Runtime.DESCRIPTOR, "RUNTIME_"),
    ],
)
def test_each_domain_enum_has_exactly_the_proto_values(
    mirror: type[Enum], descriptor: EnumDescriptor, prefix: str
) -> None:
    assert {member.name for member in mirror} == proto_names(descriptor, prefix)


def test_reason_is_the_proto_error_reason() -> None:
    descriptor = common_pb2.ErrorReason.DESCRIPTOR
    # Reason's values are the proto names themselves: what travels in google.rpc.ErrorInfo.
    assert {reason.value for reason in Reason} == {value.name for value in descriptor.values}
    for reason in Reason:
        assert reason.value == reason.name or reason is Reason.UNSPECIFIED


def test_a_missing_value_would_be_caught() -> None:
    incomplete = Enum("Incomplete", {"ANGULAR": "angular", "EUCLIDEAN": "euclidean"})
    assert {m.name for m in incomplete} != proto_names(common_pb2.Metric.DESCRIPTOR, "METRIC_")
