"""Torch's zip layout: a strict reader that accounts for every byte, and the archive torch loads.

A ``.pt2`` program is a zip archive, and zip readers disagree on malformed ones: Python's
``zipfile`` keeps the last of two members of one name, torch's reader (miniz) the first (and
looks names up ignoring case), and readers differ in which record they trust where the central
directory and a local header disagree. :func:`read_members` therefore accepts exactly the layout
torch's writer produces and nothing else, and :func:`canonical_archive` writes the checked
members into a fresh archive, the only bytes torch is then given
(:mod:`lmfn_edge.deployment.quantized`).

The standard library only.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

__all__ = ["LayoutError", "NotAZipError", "canonical_archive", "read_members"]


class LayoutError(ValueError):
    """A zip archive that is not in the layout torch's writer produces; the message says how."""


class NotAZipError(LayoutError):
    """Bytes that are not a zip archive at all."""


# torch.export.save writes through torch's PyTorchFileWriter (miniz), always in one layout
# (measured with torch 2.13 on tiny_pt2 and full-size programs): members back to back from byte 0,
# in central-directory order, each a local header with flags 0x808 (UTF-8 name, CRC and sizes in
# a data descriptor), method 0 (stored) and zero CRC and sizes, an extra field holding only
# torch's "FB" padding field (b"Z" bytes) that starts the data on a 64-byte boundary, the data,
# and a signed 16-byte data descriptor; then the central directory (no extra fields, comments or
# disk numbers), a zip64 end record (always, though no size needs 64 bits), its locator and the
# end record, with no archive comment. Anything else did not come from torch's writer, and
# refusing it leaves no room for two zip readers to see two different archives.

# The records, all little-endian. Local header: signature, version, flags, method, time, date,
# CRC, compressed and uncompressed size, name and extra field lengths. Data descriptor:
# signature, CRC, sizes. Central directory entry: signature, "made by" version, then as the local
# header, then comment length, first disk, internal and external attributes, local header
# offset. Zip64 end record: signature, size of the rest, versions, disks, entry counts,
# directory size and offset. Its locator: signature, disk, the record's offset, disk count. End
# record: signature, disks, entry counts, directory size and offset, comment length.
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_DESCRIPTOR = struct.Struct("<IIII")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR = struct.Struct("<IIQI")
_END = struct.Struct("<IHHHHIIH")
_LOCAL_SIG, _DESCRIPTOR_SIG, _CENTRAL_SIG = 0x04034B50, 0x08074B50, 0x02014B50
_END64_SIG, _LOCATOR_SIG, _END_SIG = 0x06064B50, 0x07064B50, 0x06054B50
_TORCH_FLAGS = 0x0808
_ENCRYPTED = 0x0041  # general purpose bits 0 (encrypted) and 6 (strong encryption)
_PADDING_ID = 0x4246  # torch's alignment extra field, "FB"
_ALIGNMENT = 64


def read_members(data: bytes) -> dict[str, bytes]:
    """``{name: data}`` of an archive in torch's layout (above), every byte of it accounted for.

    Raises:
        NotAZipError: If ``data`` is not a zip archive at all.
        LayoutError: If it is one, but not in torch's layout.
    """
    end_at = len(data) - _END.size
    if end_at < _END64.size + _LOCATOR.size or _END.unpack_from(data, end_at)[0] != _END_SIG:
        last = data.rfind(struct.pack("<I", _END_SIG))
        if _END64.size + _LOCATOR.size <= last < end_at:
            raise LayoutError(f"{end_at - last} bytes follow the end of its zip archive (appended data or a comment)")
        raise NotAZipError("not a zip file")
    _, disk, cd_disk, count_here, count, cd_size, cd_offset, _ = _END.unpack_from(data, end_at)
    locator_at = end_at - _LOCATOR.size
    end64_at = locator_at - _END64.size
    signature, locator_disk, recorded_end64_at, disks = _LOCATOR.unpack_from(data, locator_at)
    if (signature, locator_disk, disks) != (_LOCATOR_SIG, 0, 1) or _END64.unpack_from(data, end64_at)[0] != _END64_SIG:
        raise LayoutError("its zip archive ends without the zip64 end records torch writes")
    _, record_size, _, _, *end64 = _END64.unpack_from(data, end64_at)
    if record_size != _END64.size - 12 or end64 != [disk, cd_disk, count_here, count, cd_size, cd_offset]:
        raise LayoutError("its zip64 end record disagrees with its end record")
    if (disk, cd_disk) != (0, 0) or count_here != count:
        raise LayoutError("its zip archive spans several disks")
    # The records point at each other by absolute offsets, so bytes put in front of the archive
    # (or into it) without rewriting every offset leave the records away from where they are said to be.
    shift = end64_at - recorded_end64_at or end64_at - cd_offset - cd_size
    if shift:
        raise LayoutError(f"its zip records lie {shift} bytes away from the offsets it records (prepended or inserted data)")

    members: dict[str, bytes] = {}
    seen: set[str] = set()
    at, expected = cd_offset, 0  # the next central entry; where the next member must start
    for _ in range(count):
        if at + _CENTRAL.size > end64_at:
            raise LayoutError("its zip central directory holds fewer entries than its end record counts")
        (signature, _, _, flags, method, _, _, crc, size, raw_size, name_length, extra_length, comment_length,
         first_disk, _, _, offset) = _CENTRAL.unpack_from(data, at)
        raw_name = data[at + _CENTRAL.size:at + _CENTRAL.size + name_length]
        at += _CENTRAL.size + name_length + extra_length + comment_length
        if signature != _CENTRAL_SIG or at > end64_at:
            raise LayoutError("its zip central directory is malformed")
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise LayoutError(f"zip member name {raw_name!r} is not UTF-8") from None
        if flags & _ENCRYPTED:
            raise LayoutError(f"zip member {name!r} is encrypted")
        if (flags, method, extra_length, comment_length, first_disk) != (_TORCH_FLAGS, 0, 0, 0, 0) or size != raw_size:
            raise LayoutError(f"zip member {name!r} is not stored the way torch stores members (flags {flags:#x}, "
                         f"method {method}, {extra_length} extra and {comment_length} comment bytes)")
        # miniz, torch's reader, looks names up ignoring case.
        if name.lower() in seen:
            raise LayoutError(f"its zip archive holds the member {name!r} twice")
        seen.add(name.lower())
        if offset != expected:
            raise LayoutError(f"zip member {name!r} starts at byte {offset}, not at byte {expected} where the record "
                         "before it ends (overlapping members or hidden data)")
        members[name], expected = _local_record(data, offset, name, crc, size, cd_offset)
    if at != end64_at:
        raise LayoutError("its zip central directory holds more than its end record counts")
    if expected != cd_offset:
        raise LayoutError(f"{cd_offset - expected} bytes lie between its last zip member and its central directory")
    return members


def _local_record(data: bytes, offset: int, name: str, crc: int, size: int, limit: int) -> tuple[bytes, int]:
    """The data of the member whose local header is at ``offset``, and where its record ends.

    ``name``, ``crc`` and ``size`` are its central directory entry's; the record must end by ``limit``.
    """
    if offset + _LOCAL.size > limit:
        raise LayoutError(f"zip member {name!r} lies outside the archive")
    (signature, _, flags, method, _, _, local_crc, local_size, local_raw_size, name_length,
     extra_length) = _LOCAL.unpack_from(data, offset)
    name_at = offset + _LOCAL.size
    start = name_at + name_length + extra_length
    if signature != _LOCAL_SIG or data[name_at:name_at + name_length] != name.encode():
        raise LayoutError(f"the local header of zip member {name!r} does not match its central directory entry "
                     "(another name)")
    if (flags, method, local_crc, local_size, local_raw_size) != (_TORCH_FLAGS, 0, 0, 0, 0):
        raise LayoutError(f"the local header of zip member {name!r} does not match its central directory entry "
                     "(flags, method, CRC or sizes)")
    padding = extra_length - 4
    if (padding < 0 or start % _ALIGNMENT
            or data[name_at + name_length:start] != struct.pack("<HH", _PADDING_ID, padding) + b"Z" * padding):
        raise LayoutError(f"zip member {name!r} has extra fields other than torch's alignment padding")
    end = start + size
    if end + _DESCRIPTOR.size > limit:
        raise LayoutError(f"zip member {name!r} runs past the start of the central directory")
    if _DESCRIPTOR.unpack_from(data, end) != (_DESCRIPTOR_SIG, crc, size, size):
        raise LayoutError(f"the data descriptor of zip member {name!r} does not match its central directory entry")
    member = data[start:end]
    if zlib.crc32(member) != crc:
        raise LayoutError(f"zip member {name!r} is corrupt (its CRC does not match)")
    return member, end + _DESCRIPTOR.size


def canonical_archive(members: dict[str, bytes]) -> bytes:
    """A fresh stored zip of exactly ``members``: what torch is given to load.

    Python's ``zipfile`` writes the given bytes and nothing else; torch's PyTorchFileWriter would
    replace ``.data/version``, ``.data/serialization_id`` and ``byteorder`` with its own. Torch's
    reader does not need the 64-byte alignment its writer adds when it loads from memory: it
    copies each record into fresh storage (measured: the same program and bit-identical weights
    as from the original file, whose load it does not slow down).
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()
