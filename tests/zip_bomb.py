"""A zip archive whose config.json inflates to ``size`` bytes of spaces, made in a second or two.

Deflate blocks closed with a full flush are independent, so one compressed megabyte of spaces is
repeated instead of compressing ``size`` bytes; the archive is written by hand (one small member,
then the big one, no ZIP64: ``size`` below 4 GB).
"""
from __future__ import annotations

import struct
import zlib

CHUNK = 1_000_000


def _deflated_spaces(size: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``size`` spaces (a multiple of CHUNK) and their CRC-32."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b" " * CHUNK
    compressor.compress(chunk)
    compressor.flush(zlib.Z_FULL_FLUSH)              # after this, every chunk compresses alike
    piece = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size // CHUNK):
        crc = zlib.crc32(chunk, crc)
    return piece * (size // CHUNK) + compressor.flush(zlib.Z_FINISH), crc


def zip_bomb(size: int, name: str = "config.json") -> bytes:
    members = [("metadata.json", b"{}", 2, zlib.crc32(b"{}"), 0)]   # stored
    data, crc = _deflated_spaces(size)
    members.append((name, data, size, crc, 8))
    local, central = b"", b""
    for filename, payload, inflated, checksum, method in members:
        encoded = filename.encode()
        offset = len(local)
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, checksum, len(payload), inflated,
                             len(encoded), 0) + encoded + payload
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, checksum, len(payload),
                               inflated, len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(local), 0)
    return local + central + end
