#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turn the guest's flat binary into a C header the VMM is compiled with."""
import sys

data = open(sys.argv[1], 'rb').read()
with open(sys.argv[2], 'w') as out:
    out.write('/* Generated from %s by embed.py. */\n' % sys.argv[1].split('/')[-1])
    out.write('static const unsigned char guest_bin[] = {\n')
    for i in range(0, len(data), 12):
        out.write('\t' + ', '.join('0x%02x' % b for b in data[i:i + 12]) + ',\n')
    out.write('};\n')
