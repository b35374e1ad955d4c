"""TFRecord files of ``tf.train.Example`` records, read without TensorFlow.

A TFRecord file (GZIP-compressed or not) is a sequence of records framed as

    uint64 length (little-endian)   uint32 masked crc32c of those 8 bytes
    data[length]                    uint32 masked crc32c of data

with ``masked = ((crc >> 15) | (crc << 17)) + 0xa282ead8`` (mod 2**32) (tensorflow
``python/lib/io/python_io.py``). A ``tf.train.Example`` is the protobuf message (tensorflow
``core/example/example.proto`` and ``feature.proto``)

    Example  {Features features = 1}
    Features {map<string, Feature> feature = 1}
    Feature  {oneof: BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3}
    BytesList {repeated bytes value = 1}  FloatList {repeated float value = 1}  Int64List {repeated int64 value = 1}

decoded here from the wire format (numbers packed or not). The CRCs are computed by
``google-crc32c``; without it, by a pure-Python table (correct, thousands of times slower).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from offrl.errors import DatasetError

MASK_DELTA = 0xA282EAD8
GZIP_MAGIC = b"\x1f\x8b"
_KINDS = {1: "bytes_list", 2: "float_list", 3: "int64_list"}  # tf.train.Feature's oneof field numbers


def _python_crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)  # Castagnoli polynomial, reflected
        table.append(crc)
    return table


_TABLE = _python_crc32c_table()


def python_crc32c(data: bytes) -> int:
    """crc32c one byte at a time: the fallback without ``google-crc32c``, thousands of times slower."""
    crc, table = 0xFFFFFFFF, _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:
    from google_crc32c import value as crc32c
except ImportError:  # pragma: no cover - depends on the environment
    crc32c = python_crc32c


def masked_crc32c(data: bytes, crc: Callable[[bytes], int] | None = None) -> int:
    """TFRecord's checksum: crc32c rotated right by 15 bits plus a constant."""
    value = (crc or crc32c)(data)
    return (((value >> 15) | (value << 17)) + MASK_DELTA) & 0xFFFFFFFF


# ------------------------------------------------------------------------------------------ records


def read_records(file: Path) -> Iterator[bytes]:
    """The records of a TFRecord file (GZIP-compressed or not), their CRCs checked."""
    try:
        raw = open(file, "rb")
    except OSError as error:
        raise DatasetError(file, f"cannot be opened: {error.strerror}") from None
    with raw:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        handle = gzip.GzipFile(fileobj=raw) if compressed else raw
        index = 0
        while True:
            header = _read(handle, 12, file, index)
            if not header:
                return
            if len(header) < 12:
                raise DatasetError(file, f"record {index}: the file ends inside its header (truncated)")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                problem = "CRC mismatch on the record length (corrupt, or not a TFRecord file)"
                raise DatasetError(file, f"record {index}: {problem}")
            body = _read(handle, length + 4, file, index)
            if len(body) < length + 4:
                raise DatasetError(file, f"record {index}: the file ends inside the record (truncated)")
            data = body[:length]
            if masked_crc32c(data) != struct.unpack("<I", body[length:])[0]:
                raise DatasetError(file, f"record {index}: CRC mismatch on the record data (corrupt)")
            yield data
            index += 1


def _read(handle, size: int, file: Path, index: int) -> bytes:
    try:
        return handle.read(size)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(file, f"record {index}: cannot be decompressed (truncated or corrupt?): {error}") from None


class MalformedExample(ValueError):
    """Bytes that are not a serialized tf.train.Example."""


def _varint(data: bytes, pos: int, stop: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= stop:
            raise MalformedExample("a varint runs past the end of its message")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise MalformedExample("a varint longer than 10 bytes")


def _fields(data: bytes, start: int, stop: int) -> Iterator[tuple[int, int, int, int]]:
    """Protobuf wire format: (field number, wire type, start, end) of each field in ``data[start:stop]``;
    for a varint (wire type 0), (field number, 0, its value, end)."""
    pos = start
    while pos < stop:
        key, pos = _varint(data, pos, stop)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos, stop)
            yield number, wire, value, pos
            continue
        if wire == 2:
            size, pos = _varint(data, pos, stop)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:
            raise MalformedExample(f"unsupported wire type {wire} (field {number})")
        end = pos + size
        if end > stop:
            raise MalformedExample(f"field {number} runs past the end of its message")
        yield number, wire, pos, end
        pos = end


def parse_example(data: bytes) -> dict[str, tuple[str, list]]:
    """A serialized ``tf.train.Example`` as {feature name: (kind, values)}.

    Example{1: Features}; Features{1: map<string, Feature> entries}; Feature{oneof 1: BytesList,
    2: FloatList, 3: Int64List}, each list {1: repeated value}, numbers packed or not."""
    features: dict[str, tuple[str, list]] = {}
    for number, wire, start, end in _fields(data, 0, len(data)):
        if number != 1 or wire != 2:
            continue
        for entry_number, entry_wire, entry_start, entry_end in _fields(data, start, end):
            if entry_number != 1 or entry_wire != 2:
                continue
            name, feature = None, ("missing", [])
            for part, part_wire, part_start, part_end in _fields(data, entry_start, entry_end):
                if part == 1 and part_wire == 2:
                    name = data[part_start:part_end].decode("utf-8", errors="replace")
                elif part == 2 and part_wire == 2:
                    feature = _feature(data, part_start, part_end)
            if name is not None:
                features[name] = feature
    return features


def _feature(data: bytes, start: int, stop: int) -> tuple[str, list]:
    kind, values = "empty", []
    for number, wire, list_start, list_end in _fields(data, start, stop):
        if number not in _KINDS or wire != 2:
            continue
        kind, values = _KINDS[number], []  # a later kind replaces an earlier one (oneof)
        for field, value_wire, begin, end in _fields(data, list_start, list_end):
            if field != 1:
                continue
            if kind == "bytes_list" and value_wire == 2:
                values.append(data[begin:end])
            elif kind == "float_list" and value_wire == 2:  # packed
                if (end - begin) % 4:
                    raise MalformedExample("a packed float list whose size is not a multiple of 4")
                values.extend(struct.unpack(f"<{(end - begin) // 4}f", data[begin:end]))
            elif kind == "float_list" and value_wire == 5:
                values.append(struct.unpack("<f", data[begin:end])[0])
            elif kind == "int64_list" and value_wire == 2:  # packed
                pos = begin
                while pos < end:
                    value, pos = _varint(data, pos, end)
                    values.append(value)
            elif kind == "int64_list" and value_wire == 0:
                values.append(begin)  # _fields yields a varint's value in place of its start
            else:
                raise MalformedExample(f"a {kind} holding wire type {value_wire}")
        if kind == "int64_list":
            values = [value - (1 << 64) if value >= 1 << 63 else value for value in values]
    return kind, values
