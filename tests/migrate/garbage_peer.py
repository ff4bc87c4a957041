#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A bad source: connects in plain TCP and sends a frame header whose
region does not exist, then an oversized length, then garbage."""
import socket
import struct
import sys

MAGIC = 0x57544c46
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
# kind=PAGES(2), flags 0, region 9999, length 4096, offset 0, count 4096
s.sendall(struct.pack("<IBBHIIQQ", MAGIC, 2, 0, 0, 9999, 4096, 0, 4096) + b"\xee" * 4096)
s.sendall(struct.pack("<IBBHIIQQ", MAGIC, 1, 0, 0, 0, 0xFFFFFFFF, 0, 0))
s.sendall(b"\x00garbage" * 100)
try:
    print(s.recv(100))
except OSError as e:
    print("closed:", e)
