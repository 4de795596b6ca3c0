"""A node's GenerateRequest on the wire with its attachment appended, copied once.

Built as a message, a multi-MB attachment was copied three times per forward (into the
message, into its serialisation, and a filler made first); under a burst of 30 uploads of
2-5 MB that was about 10 ms of the gateway's CPU per Submit on 2 cores, where the emulated
network should set the pace (scenarios/fidelity.py). Protobuf parsers accept fields in any
order, so the attachment field is appended to the rest of the message, serialised small.
An emulated attachment (Service.emulated_attachment_bytes) comes from one shared buffer of
zeros, so nothing is allocated for it but the joined message.
"""

from __future__ import annotations

from perllm.v1 import inference_pb2

_ATTACHMENT = inference_pb2.GenerateRequest.DESCRIPTOR.fields_by_name["attachment"]
_TAG = bytes([(_ATTACHMENT.number << 3) | 2])  # wire type 2: length-delimited
_zeros = memoryview(b"")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def filler(size: int) -> memoryview:
    """`size` zero bytes: a view of one shared buffer, grown to the largest size asked
    (calloc'd, so its pages are the kernel's zero page until written, and it never is)."""
    global _zeros
    if size < 0:
        raise ValueError(f"an emulated attachment's size must be >= 0 (got {size})")
    zeros = _zeros
    if size > len(zeros):
        zeros = _zeros = memoryview(bytes(max(size, 8 * 1024 * 1024)))
    return zeros[:size]


def encode(request: inference_pb2.GenerateRequest, attachment: bytes | int) -> bytes:
    """`request` (its attachment field empty) serialised with `attachment` appended: the
    bytes sent, or (an int) that many filler bytes. Parses as the same message as
    `request` with `attachment` set."""
    if request.attachment:
        raise ValueError("encode appends the attachment: leave request.attachment empty")
    body = filler(attachment) if isinstance(attachment, int) else attachment
    head = request.SerializeToString()
    if not len(body):
        return head
    return b"".join((head, _TAG, _varint(len(body)), body))
