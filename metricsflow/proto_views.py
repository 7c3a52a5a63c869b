"""Private views of protobuf messages: the same field numbers, some fields declared as raw bytes.

Parsers read a length-delimited field they only need as a key, or read later, as ``bytes``
instead of a message (the wire format is the same), so protobuf makes no object per label,
series or attribute. The views live in a descriptor pool of their own, never in the default
one, so they cannot clash with the generated classes of the same messages.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def message_classes(fdp: descriptor_pb2.FileDescriptorProto, *names: str) -> tuple[Any, ...]:
    """The classes of the messages ``names`` that ``fdp`` declares, built in a private pool."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{fdp.package}.{name}"))
                 for name in names)
