"""Crafted ``.pt2`` programs: no member of the archive may run code, and none is ever parsed
by torch unless it is exactly the member that was checked.

``torch.export.load`` runs code from several places of a ``.pt2`` (see
``lmfn_edge.deployment.quantized``); each payload below is placed where torch would run it, and
every one must be refused by ``load_quantized`` and by ``export --quantized`` before anything
runs. The crafted archives are written in the exact layout of torch's own writer
(:func:`torch_zip`, checked byte for byte against ``tiny_pt2``), so what refuses them is the
check aimed at the payload, not the zip structure, unless the structure is what a case breaks.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from hostile import Payload, no_temporaries, refused, torch_pickle

from lmfn_edge.deployment import load_quantized
from lmfn_edge.deployment.quantized import QuantizedProgramError


# --- archives in torch's layout ----------------------------------------------------------------


def torch_zip(entries: list[tuple[str, bytes]], lead: bytes = b"") -> bytes:
    """``(name, data)`` entries (a name may repeat) laid out as torch's writer (miniz) lays them out.

    Stored members with flags 0x808, zero CRC and sizes in the local header, a "FB" extra field
    of b"Z" padding to a 64-byte data offset, a signed data descriptor; a central directory, a zip64
    end record, its locator and the end record. ``lead`` goes before the first member, with every
    recorded offset counting it (what a tool that prepends data and fixes the offsets writes).
    """
    out, central = bytearray(lead), bytearray()
    for name, data in entries:
        raw, offset, crc = name.encode(), len(out), zlib.crc32(data)
        padding = -(offset + 30 + len(raw) + 4) % 64
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, 0x808, 0, 0, 0, 0, 0, 0, len(raw), 4 + padding) + raw
        out += struct.pack("<HH", 0x4246, padding) + b"Z" * padding + data
        out += struct.pack("<IIII", 0x08074B50, crc, len(data), len(data))
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 0, 0x808, 0, 0, 0, crc, len(data), len(data),
                               len(raw), 0, 0, 0, 0, 0, offset) + raw
    cd_offset, count = len(out), len(entries)
    out += central
    end64 = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 798, 45, 0, 0, count, count, len(central), cd_offset)
    out += struct.pack("<IIQI", 0x07064B50, 0, end64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), cd_offset, 0)
    return bytes(out)


def _members(path: Path) -> dict[str, bytes]:
    """The members of a genuine archive (no repeated names, so every zip reader agrees)."""
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _rewrite(src: Path, dst: Path, change) -> Path:
    """Copy a .pt2 archive, letting ``change(members)`` edit the ``{name: bytes}`` mapping."""
    members = _members(src)
    change(members)
    dst.write_bytes(torch_zip(list(members.items())))
    return dst


def test_torch_zip_writes_what_torch_writes(tiny_pt2):
    assert torch_zip(list(_members(tiny_pt2).items())) == tiny_pt2.read_bytes()


def test_genuine_program_loads_as_torch_loads_it(tiny_pt2):
    # load_quantized hands torch a fresh archive of the checked members: the same program.
    program, info = load_quantized(tiny_pt2)
    x = torch.rand(1, 3, info.tile, info.tile)
    assert torch.equal(program.module()(x), torch.export.load(str(tiny_pt2)).module()(x))


# --- crafted pickles: .pt2 programs ---------------------------------------------------------


def _prefix(members) -> str:
    return next(n for n in members if n.endswith("archive_format"))[: -len("archive_format")]


def _config_name(members, kind: str) -> str:
    return next(n for n in members if n.endswith(f"{kind}_config.json"))


def _edit_json(members, name, edit) -> None:
    data = json.loads(members[name])
    edit(data)
    members[name] = json.dumps(data).encode()


def sample_inputs_payload(members, marker):
    name = next(n for n in members if "/sample_inputs/" in n)
    members[name] = torch_pickle(Payload(marker))


def pickled_weight_payload(members, marker):
    name = _config_name(members, "weights")

    def edit(config):
        entry = next(iter(config["config"].values()))
        entry["use_pickle"] = True
        members[_prefix(members) + "data/weights/" + entry["path_name"]] = torch_pickle(Payload(marker))

    _edit_json(members, name, edit)


def pickled_constant_payload(members, marker):
    members[_prefix(members) + "data/constants/tensor_0"] = torch_pickle(Payload(marker))
    _edit_json(members, _config_name(members, "constants"), lambda c: c["config"].update(
        {"evil": {"path_name": "tensor_0", "is_param": False, "use_pickle": True, "tensor_meta": None}}))


def custom_object_payload(members, marker):
    import pickle

    members[_prefix(members) + "data/constants/custom_obj_0"] = pickle.dumps(Payload(marker))
    _edit_json(members, _config_name(members, "constants"), lambda c: c["config"].update(
        {"evil": {"path_name": "custom_obj_0", "is_param": False, "use_pickle": False, "tensor_meta": None}}))


def opaque_object_payload(members, marker):
    import pickle

    members[_prefix(members) + "data/constants/opaque_obj_0"] = pickle.dumps(Payload(marker))
    _edit_json(members, _config_name(members, "constants"), lambda c: c["config"].update(
        {"evil": {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": False, "tensor_meta": None}}))


def legacy_weights_payload(members, marker):
    members[_prefix(members) + "data/weights/model.pt"] = torch_pickle(Payload(marker))


def graph_target_payload(members, marker):
    name = next(n for n in members if "/models/" in n)

    def edit(program):
        node = program["graph_module"]["graph"]["nodes"][0]
        node["target"] = "torch.os.mkdir"  # resolved by attribute lookup from the torch module
        node["inputs"] = [{"name": "path", "arg": {"as_string": str(marker)}, "kind": 1}]

    _edit_json(members, name, edit)


def guard_code_payload(members, marker):
    name = next(n for n in members if "/models/" in n)
    _edit_json(members, name, lambda p: p.update(guards_code=[f"__import__('os').mkdir({str(marker)!r})"]))


def symbolic_expression_payload(members, marker):
    name = next(n for n in members if "/models/" in n)

    def edit(program):
        sizes = next(iter(program["graph_module"]["graph"]["tensor_values"].values()))["sizes"]
        sizes[0] = {"as_expr": {"expr_str": f"__import__('os').mkdir({str(marker)!r})", "hint": None}}

    _edit_json(members, name, edit)


PT2_PAYLOADS = [sample_inputs_payload, pickled_weight_payload, pickled_constant_payload, custom_object_payload,
                opaque_object_payload, legacy_weights_payload, graph_target_payload, guard_code_payload,
                symbolic_expression_payload]


def _load_with_raw_torch(path: Path) -> None:
    """``torch.export.load``, unguarded, as the SDK never calls it."""
    import torch.ao.quantization.fx._decomposed  # noqa: F401

    try:
        torch.export.load(str(path))
    except Exception:  # noqa: BLE001  (what happens after the payload ran does not matter)
        pass


def test_payload_in_sample_inputs_is_live_for_raw_torch(tmp_path, tiny_pt2):
    # What the SDK guards against: torch.export.load runs this payload (its safe load of the
    # sample inputs fails and it falls back to an unrestricted unpickle).
    marker = tmp_path / "ran"
    _load_with_raw_torch(_rewrite(tiny_pt2, tmp_path / "evil.pt2", lambda m: sample_inputs_payload(m, marker)))
    assert marker.exists()


@pytest.mark.parametrize("payload", PT2_PAYLOADS, ids=lambda f: f.__name__)
def test_pt2_payload_in_any_member_is_refused_without_running(tmp_path, capsys, tiny_pt2, payload):
    marker = tmp_path / "ran"
    evil = _rewrite(tiny_pt2, tmp_path / "evil.pt2", lambda m: payload(m, marker))
    with pytest.raises(QuantizedProgramError, match="refusing to load it"):
        load_quantized(evil)
    refused(capsys, "export", "--quantized", evil, "--output", tmp_path / "q.pte", message="refusing to load it")
    assert not marker.exists()
    assert not (tmp_path / "q.pte").exists()
    no_temporaries(tmp_path)


# --- one name, two members ----------------------------------------------------------------
# Python's zipfile reads the last member of a name, torch's reader (miniz) the first: a check
# that reads the archive one way and a load that reads it the other see different files.

PICKLED_PAYLOADS = [sample_inputs_payload, pickled_weight_payload, pickled_constant_payload, custom_object_payload,
                    opaque_object_payload, legacy_weights_payload]
HARMLESS = torch_pickle(torch.zeros(1))  # the "genuine" copy of a member that a payload adds


def _twice(pt2: Path, marker: Path, payload, payload_first: bool) -> tuple[bytes, str]:
    """``pt2`` with every member that ``payload`` changes or adds held twice (its copy and the
    genuine one, in the order asked for), and the first such member's name."""
    genuine = _members(pt2)
    evil = dict(genuine)
    payload(evil, marker)
    entries, changed = [], []
    for name, data in evil.items():
        if genuine.get(name) == data:
            entries.append((name, data))
        else:
            copies = [(name, data), (name, genuine.get(name, HARMLESS))]
            entries += copies if payload_first else copies[::-1]
            changed.append(name)
    return torch_zip(entries), changed[0]


def test_duplicate_payload_is_live_for_raw_torch(tmp_path, tiny_pt2):
    # The attacker probe's file: the sample inputs twice, payload first. A zipfile-based check
    # reads the genuine copy, and torch.export.load unpickles the payload.
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt2"
    data, name = _twice(tiny_pt2, marker, sample_inputs_payload, payload_first=True)
    evil.write_bytes(data)
    with zipfile.ZipFile(evil) as z:
        assert z.read(name) == _members(tiny_pt2)[name]
    _load_with_raw_torch(evil)
    assert marker.exists()


@pytest.mark.parametrize("payload_first", [True, False], ids=["payload_first", "genuine_first"])
@pytest.mark.parametrize("payload", PICKLED_PAYLOADS, ids=lambda f: f.__name__)
def test_pt2_member_held_twice_is_refused_without_running(tmp_path, capsys, tiny_pt2, payload, payload_first):
    # [sample_inputs_payload-payload_first] is the attacker probe's file, which the zipfile-based
    # check accepted and whose payload the export then ran; [pickled_weight_payload-payload_first]
    # (weights config and weight both twice) ran its payload too.
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt2"
    data, name = _twice(tiny_pt2, marker, payload, payload_first)
    evil.write_bytes(data)
    message = f"holds the member {name!r} twice; refusing to load it"
    with pytest.raises(QuantizedProgramError, match=re.escape(message)):
        load_quantized(evil)
    refused(capsys, "export", "--quantized", evil, "--output", tmp_path / "q.pte", message=message)
    assert not marker.exists()
    assert not (tmp_path / "q.pte").exists()
    no_temporaries(tmp_path)


def test_every_member_held_twice_is_refused(tmp_path, capsys, tiny_pt2):
    # Whatever the member, two copies of one name are two archives to two zip readers: refused in
    # every position, even when both copies are the genuine bytes.
    entries = list(_members(tiny_pt2).items())
    for i, (name, data) in enumerate(entries):
        evil = tmp_path / "twice.pt2"
        evil.write_bytes(torch_zip([*entries[: i + 1], (name, data), *entries[i + 1 :]]))
        refused(capsys, "export", "--quantized", evil, "--output", tmp_path / "q.pte",
                message=f"holds the member {name!r} twice")
    assert not (tmp_path / "q.pte").exists()
    no_temporaries(tmp_path)


def test_names_differing_in_case_are_one_name_to_torch(tmp_path, capsys, tiny_pt2):
    # miniz looks names up ignoring case: "MODEL.pt" answers a request for "model.pt".
    entries = list(_members(tiny_pt2).items())
    name = next(n for n, _ in entries if "/sample_inputs/" in n)
    entries.insert(0, (name.upper(), torch_pickle(Payload(tmp_path / "ran"))))
    evil = tmp_path / "evil.pt2"
    evil.write_bytes(torch_zip(entries))
    refused(capsys, "export", "--quantized", evil, "--output", tmp_path / "q.pte", message=f"{name!r} twice")
    assert not (tmp_path / "ran").exists()


# --- the zip structure: every byte as torch's writer puts it -----------------------------------


def _local_at(data: bytes, name: str) -> int:
    return zipfile.ZipFile(io.BytesIO(data)).getinfo(name).header_offset


def _central_at(data: bytes, name: str) -> int:
    # The central directory follows every local record, and a name in it runs up to the next record.
    return data.rindex(name.encode() + b"PK") - 46


def _patch(data: bytes, at: int, fmt: str, *values) -> bytes:
    return data[:at] + struct.pack(fmt, *values) + data[at + struct.calcsize(fmt):]


SAMPLE = "archive/data/sample_inputs/model.pt"
FIRST, SECOND = "archive/data/weights/weight_0", "archive/data/weights/weight_1"  # at bytes 0 and 176
STRUCTURE_CASES = {
    "local_name_differs": (lambda d: _patch(d, _local_at(d, SAMPLE) + 30 + len(SAMPLE) - 1, "<c", b"x"),
                           (f"the local header of zip member {SAMPLE!r} does not match its central directory "
                            "entry (another name)")),
    "local_method_differs": (lambda d: _patch(d, _local_at(d, SAMPLE) + 8, "<H", 8),
                             (f"the local header of zip member {SAMPLE!r} does not match its central directory "
                              "entry (flags, method, CRC or sizes)")),
    "prepended_bytes": (lambda d: bytes(100) + d,
                        "its zip records lie 100 bytes away from the offsets it records (prepended or inserted data)"),
    "inserted_bytes": (lambda d: d[:-98] + bytes(8) + d[-98:],
                       "its zip records lie 8 bytes away from the offsets it records (prepended or inserted data)"),
    "prepended_bytes_offsets_fixed": (lambda d: torch_zip(list(_members_of(d).items()), lead=bytes(64)),
                                      f"zip member {FIRST!r} starts at byte 64, not at byte 0"),
    "trailing_bytes": (lambda d: d + bytes(10), "10 bytes follow the end of its zip archive"),
    "archive_comment": (lambda d: d[:-2] + struct.pack("<H", 7) + b"comment", "7 bytes follow the end of its zip"),
    "entry_inside_another": (lambda d: _patch(d, _central_at(d, SECOND) + 42, "<I", 64),
                             (f"zip member {SECOND!r} starts at byte 64, not at byte 176 where the record before "
                              "it ends (overlapping members or hidden data)")),
    "entry_past_the_directory": (lambda d: _patch(d, _central_at(d, FIRST) + 20, "<II", 2**31, 2**31),
                                 f"zip member {FIRST!r} runs past the start of the central directory"),
    "encrypted": (lambda d: _patch(d, _central_at(d, SAMPLE) + 8, "<H", 0x809), f"zip member {SAMPLE!r} is encrypted"),
    "deflated": (lambda d: _patch(d, _central_at(d, SAMPLE) + 10, "<H", 8),
                 f"zip member {SAMPLE!r} is not stored the way torch stores members (flags 0x808, method 8"),
    "crc_mismatch": (lambda d: _patch(d, 64, "<B", d[64] ^ 1), f"zip member {FIRST!r} is corrupt"),
    "descriptor_differs": (lambda d: _patch(d, 160 + 8, "<I", 95),
                           f"the data descriptor of zip member {FIRST!r} does not match"),
    "extra_field_not_padding": (lambda d: _patch(d, 176 + 30 + len(SECOND) + 4, "<c", b"Y"),
                                f"zip member {SECOND!r} has extra fields other than torch's alignment padding"),
    "no_zip64_records": (lambda d: _python_zip(_members_of(d)), "ends without the zip64 end records torch writes"),
    "end_records_disagree": (lambda d: _patch(d, len(d) - 12, "<I", 9000), "zip64 end record disagrees"),
}


def _members_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def _python_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("case", STRUCTURE_CASES)
def test_zip_structure_torch_never_writes_is_refused(tmp_path, capsys, tiny_pt2, case):
    edit, message = STRUCTURE_CASES[case]
    data = tiny_pt2.read_bytes()
    assert (_local_at(data, FIRST), _local_at(data, SECOND)) == (0, 176)  # the offsets the edits assume
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(edit(data))
    with pytest.raises(QuantizedProgramError, match="refusing to load it"):
        load_quantized(bad)
    refused(capsys, "export", "--quantized", bad, "--output", tmp_path / "q.pte", message=message)
    assert not (tmp_path / "q.pte").exists()
    no_temporaries(tmp_path)


# --- JSON members: bounded before they are parsed ------------------------------------------------


@pytest.mark.parametrize("member", ["models/model.json", "data/weights/model_weights_config.json",
                                    "data/constants/model_constants_config.json", "extra/lmfn_config.json"])
def test_deeply_nested_json_member_is_one_line(tmp_path, capsys, tiny_pt2, member):
    deep = _rewrite(tiny_pt2, tmp_path / "deep.pt2",
                    lambda m: m.update({"archive/" + member: b"[" * 100_000 + b"]" * 100_000}))
    refused(capsys, "export", "--quantized", deep, "--output", tmp_path / "q.pte",
            message=f"deep.pt2: {member.removeprefix('extra/')}: metadata nests 100000 levels deep, more than")
    assert not (tmp_path / "q.pte").exists()
    no_temporaries(tmp_path)


def test_oversized_json_member_is_refused_unparsed(tmp_path, capsys, tiny_pt2):
    big = _rewrite(tiny_pt2, tmp_path / "big.pt2",
                   lambda m: m.update({"archive/extra/lmfn_config.json": b" " * (2**20 + 1) + b"{}"}))
    refused(capsys, "export", "--quantized", big, "--output", tmp_path / "q.pte",
            message="lmfn_config.json: 1048579 bytes of metadata, more than the limit of 1048576")


def test_pt2_that_is_not_a_program(tmp_path, capsys, tiny_pt2):
    out = tmp_path / "q.pte"
    (tmp_path / "bytes.pt2").write_bytes(os.urandom(4096))
    refused(capsys, "export", "--quantized", tmp_path / "bytes.pt2", "--output", out, message="not a .pt2 program")
    truncated = tmp_path / "cut.pt2"
    truncated.write_bytes(tiny_pt2.read_bytes()[: tiny_pt2.stat().st_size // 2])
    refused(capsys, "export", "--quantized", truncated, "--output", out, message="cut.pt2")
    no_info = _rewrite(tiny_pt2, tmp_path / "noinfo.pt2",
                       lambda m: m.pop(next(n for n in m if n.endswith("lmfn_config.json"))))
    refused(capsys, "export", "--quantized", no_info, "--output", out, message="not an lmfn-edge quantized program")
    bad_info = _rewrite(tiny_pt2, tmp_path / "badinfo.pt2", lambda m: m.update(
        {next(n for n in m if n.endswith("lmfn_config.json")): b'{"format": "lmfn-edge-quantized", "method": "qat",'
                                                                 b' "config": {"channels": 7}, "tile": 16}'}))
    refused(capsys, "export", "--quantized", bad_info, "--output", out, message="invalid LMFN config")
    refused(capsys, "export", "--quantized", tmp_path, "--output", out,
            message="not found (int8 parameters .safetensors, or a .pt2 program)")
    refused(capsys, "export", "--quantized", tiny_pt2, "--scale", "4", "--output", out,
            message="is an x2 program, but --scale is 4")
    refused(capsys, "export", "--quantized", tiny_pt2, "--shape", "32x32", "--output", out,
            message="was exported at a 16x16 tile")
    refused(capsys, "export", "--quantized", tiny_pt2, "--overlap", "16", "--output", out,
            message="--overlap 16 must be smaller than the tile (16x16)")
    assert not out.exists()
    no_temporaries(tmp_path)
