"""Private views of protobuf messages: the same field numbers, some fields declared as raw bytes.

Parsers read a length-delimited field they only need as a key, or read later, as ``bytes``
instead of a message (the wire format is the same), so protobuf makes no object per label,
series or attribute. The views live in a descriptor pool of their own, never in the default
one, so they cannot clash with the generated classes of the same messages.
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"bytes": _F.TYPE_BYTES, "string": _F.TYPE_STRING, "int32": _F.TYPE_INT32, "int64": _F.TYPE_INT64,
            "uint32": _F.TYPE_UINT32, "uint64": _F.TYPE_UINT64, "double": _F.TYPE_DOUBLE, "bool": _F.TYPE_BOOL}
_FIELD = re.compile(r"\s*(repeated\s+)?(\w+)\s+(\w+)\s*=\s*(\d+)\s*")


def views(package: str, messages: dict[str, str], *names: str) -> tuple[Any, ...]:
    """The classes of ``names`` among ``messages``: each message's fields written as in a proto3
    file, ``"repeated bytes labels = 1; int32 kind = 3"``; a type that is no scalar is a message
    of the same declarations."""
    fdp = descriptor_pb2.FileDescriptorProto(name=package.replace(".", "_") + ".proto", package=package,
                                             syntax="proto3")
    for message, fields in messages.items():
        declared = fdp.message_type.add(name=message)
        for field in fields.split(";"):
            m = _FIELD.fullmatch(field)
            if m is None:
                raise ValueError(f"{message}: cannot read field {field!r}")
            repeated, kind, name, number = m.groups()
            label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
            if kind not in _SCALARS and kind not in messages:
                raise ValueError(f"{message}: cannot read field {field!r}: {kind} is no scalar and no message here")
            if kind in _SCALARS:
                declared.field.add(name=name, number=int(number), type=_SCALARS[kind], label=label)
            else:
                declared.field.add(name=name, number=int(number), type=_F.TYPE_MESSAGE, label=label,
                                   type_name=f".{package}.{kind}")
    return message_classes(fdp, *names)


def message_classes(fdp: descriptor_pb2.FileDescriptorProto, *names: str) -> tuple[Any, ...]:
    """The classes of the messages ``names`` that ``fdp`` declares, built in a private pool."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{fdp.package}.{name}"))
                 for name in names)
