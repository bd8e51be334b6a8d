#!/bin/sh
# Build seed corpora for the fuzz targets from real mksquashfs images (needs mksquashfs and
# python3). Usage: fuzz/seed.sh  (run from anywhere)
set -eu
cd "$(dirname "$0")"
mkdir -p corpus/decompress corpus/superblock
python3 - <<'PY'
import os, struct, subprocess, tempfile
comps = ['gzip', 'lzma', 'lzo', 'xz', 'lz4', 'zstd']  # id order: index = id - 1
d = tempfile.mkdtemp()
tree = os.path.join(d, 't')
os.makedirs(tree + '/s')
open(tree + '/a', 'w').write('hello\n' * 500)
open(tree + '/s/b', 'w').write(''.join(f'{i}\n' for i in range(3000)))
for i, c in enumerate(comps):
    img = os.path.join(d, c)
    subprocess.run(['mksquashfs', tree, img, '-comp', c, '-noappend', '-quiet', '-no-progress'],
                   check=True, stdout=subprocess.DEVNULL)
    data = open(img, 'rb').read()
    inode_table = struct.unpack_from('<Q', data, 64)[0]
    header = struct.unpack_from('<H', data, inode_table)[0]
    block = data[inode_table + 2:inode_table + 2 + (header & 0x7fff)]
    open(f'corpus/decompress/{c}', 'wb').write(bytes([i, 3]) + block)
    open(f'corpus/decompress/{c}-rt', 'wb').write(bytes([i | 0x80, 0]) + b'squashbox ' * 50)
    open(f'corpus/superblock/{c}', 'wb').write(data[:96] + struct.pack('<Q', len(data)) + data[98:106])
PY
