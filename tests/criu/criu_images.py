# SPDX-License-Identifier: MIT
"""CRIU's image framing and the few protobuf fields the tests rewrite:
enough to turn a plain dump into what `criu dump --lazy-pages` writes
(lazy pages with no local bytes) and to corrupt an image on purpose."""
import struct

MAGIC_COMMON = 0x54564319
MAGIC_PAGEMAP = 0x56084025
PE_PARENT, PE_LAZY, PE_PRESENT = 1, 2, 4


def varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def put_varint(v):
    out = bytearray()
    while True:
        c = v & 0x7F
        v >>= 7
        out.append(c | (0x80 if v else 0))
        if not v:
            return bytes(out)


def fields(msg):
    """{field number: value} of a message of varint fields only."""
    out, i = {}, 0
    while i < len(msg):
        key, i = varint(msg, i)
        assert key & 7 == 0, "only varint fields expected"
        out[key >> 3], i = varint(msg, i)
    return out


def message(f):
    return b"".join(put_varint(k << 3) + put_varint(v) for k, v in sorted(f.items()))


def records(data):
    """The two magics, and each record's bytes."""
    m = struct.unpack_from("<II", data, 0)
    out, i = [], 8
    while i < len(data):
        (n,) = struct.unpack_from("<I", data, i)
        out.append(data[i + 4:i + 4 + n])
        i += 4 + n
    return m, out


def write_records(magics, recs):
    return struct.pack("<II", *magics) + b"".join(struct.pack("<I", len(r)) + r for r in recs)


def pagemap(path):
    """(pages_id, [(vaddr, nr_pages, flags)])"""
    with open(path, "rb") as f:
        _, recs = records(f.read())
    head = fields(recs[0])
    ents = []
    for r in recs[1:]:
        f = fields(r)
        flags = f.get(4, PE_PARENT if f.get(3) else PE_PRESENT)
        ents.append((f[1], f.get(5, f.get(2)), flags))
    return head[1], ents


def make_remote(imgdir, pid):
    """Rewrite pid's pagemap and pages file as `dump --lazy-pages` would
    have: lazy entries lose PE_PRESENT and their bytes leave the pages
    file. Returns {vaddr: bytes} of the lazy pages, for a page server."""
    pm = f"{imgdir}/pagemap-{pid}.img"
    with open(pm, "rb") as f:
        magics, recs = records(f.read())
    pages_id = fields(recs[0])[1]
    pf = f"{imgdir}/pages-{pages_id}.img"
    with open(pf, "rb") as f:
        data = f.read()
    lazy, keep, off, out = {}, bytearray(), 0, [recs[0]]
    for r in recs[1:]:
        f = fields(r)
        n = f.get(5, f.get(2))
        flags = f.get(4, PE_PRESENT)
        chunk = b""
        if flags & PE_PRESENT:
            chunk = data[off:off + n * 4096]
            off += n * 4096
        if flags & PE_LAZY:
            lazy[f[1]] = chunk
            f[4] = PE_LAZY
        else:
            keep += chunk
        out.append(message(f))
    with open(pm, "wb") as f:
        f.write(write_records(magics, out))
    with open(pf, "wb") as f:
        f.write(keep)
    return lazy
