"""Annotation: requests out, the simulated oracle, deliveries back, merge."""

from alseg_core.annotation.deliveries import (
    DeliveredImage,
    Delivery,
    check_delivery_path,
    read_delivery,
    write_delivery,
)
from alseg_core.annotation.merge import merge_delivery
from alseg_core.annotation.oracle import oracle_answer
from alseg_core.annotation.requests import (
    Request,
    RequestItem,
    load_request,
    make_request,
    write_request,
)

__all__ = [
    "DeliveredImage",
    "Delivery",
    "Request",
    "RequestItem",
    "check_delivery_path",
    "load_request",
    "make_request",
    "merge_delivery",
    "oracle_answer",
    "read_delivery",
    "write_delivery",
    "write_request",
]
