"""Write a small registry hive (REGF) for tests: keys with REG_SZ and REG_DWORD values.

Laid out from the published format description (base block, one hive bin, nk/lf/vk cells), see
https://github.com/libyal/libregf/blob/main/documentation/Windows%20NT%20Registry%20File%20(REGF)%20format.asciidoc
Only what libregf needs to read keys and values is written (no security cells).
"""

from __future__ import annotations

import struct

_NONE = 0xFFFFFFFF


class _Cells:
    """Cells of one hive bin; offsets count from the bin's start, whose header takes 32 bytes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def next_offset(self) -> int:
        return 32 + len(self.data)

    def add(self, payload: bytes) -> int:
        offset = self.next_offset()
        size = (len(payload) + 4 + 7) // 8 * 8
        self.data += struct.pack("<i", -size) + payload + b"\0" * (size - 4 - len(payload))
        return offset


def _value_cells(cells: _Cells, name: str, value: str | int) -> int:
    if isinstance(value, int):
        vtype, data = 4, struct.pack("<I", value)
    else:
        vtype, data = 1, (value + "\0").encode("utf-16-le")
    raw_name = name.encode("ascii")
    if len(data) <= 4:
        size, offset = len(data) | 0x80000000, struct.unpack("<I", data.ljust(4, b"\0"))[0]
    else:
        size, offset = len(data), cells.add(data)
    return cells.add(b"vk" + struct.pack("<HIIIHH", len(raw_name), size, offset, vtype, 1, 0) + raw_name)


def _key(cells: _Cells, name: str, tree: dict, parent: int | None, root: bool = False) -> int:
    values = {k: v for k, v in tree.items() if not isinstance(v, dict)}
    subkeys = sorted(((k, v) for k, v in tree.items() if isinstance(v, dict)), key=lambda kv: kv[0].upper())
    value_offsets = [_value_cells(cells, k, v) for k, v in values.items()]
    values_list = cells.add(b"".join(struct.pack("<I", o) for o in value_offsets)) if value_offsets else _NONE
    raw = name.encode("ascii")
    nk_offset = cells.next_offset()  # reserve: the nk is written now, its sub-key list patched below
    fixed = 0x4C + len(raw)
    cells.add(b"\0" * fixed)
    children = [_key(cells, k, v, nk_offset) for k, v in subkeys]
    sub_list = _NONE
    if children:
        entries = b"".join(
            struct.pack("<I", o) + k.encode("ascii")[:4].ljust(4, b"\0")
            for o, (k, _) in zip(children, subkeys, strict=True)
        )
        sub_list = cells.add(b"lf" + struct.pack("<H", len(children)) + entries)
    flags = 0x2C if root else 0x20
    nk = b"nk" + struct.pack(
        "<HQIIIIIIIIIIIIIIIHH",
        flags, 0x01D7000000000000, 0, parent if parent is not None else _NONE, len(children), 0, sub_list, _NONE,
        len(value_offsets), values_list, _NONE, _NONE, max((len(k) * 2 for k, _ in subkeys), default=0), 0,
        max((len(k) * 2 for k in values), default=0), 256, 0, len(raw), 0,
    ) + raw  # fmt: skip
    cells.data[nk_offset - 28 : nk_offset - 28 + len(nk)] = nk
    return nk_offset


def build_hive(tree: dict) -> bytes:
    """A hive whose root key holds `tree` (nested dicts are keys; str/int leaves are values)."""
    cells = _Cells()
    root = _key(cells, "ROOT", tree, None, root=True)
    body = bytes(cells.data)
    bin_size = (len(body) + 32 + 4095) // 4096 * 4096
    free = bin_size - 32 - len(body)
    hbin = b"hbin" + struct.pack("<IIQQI", 0, bin_size, 0, 0, 0) + body
    if free:
        hbin += struct.pack("<i", free) + b"\0" * (free - 4)
    base = bytearray(4096)
    struct.pack_into("<4sIIQIIIIIII", base, 0, b"regf", 1, 1, 0, 1, 5, 0, 1, root, bin_size, 1)
    checksum = 0
    for (word,) in struct.iter_unpack("<I", bytes(base[:0x1FC])):
        checksum ^= word
    struct.pack_into("<I", base, 0x1FC, checksum)
    return bytes(base) + hbin
