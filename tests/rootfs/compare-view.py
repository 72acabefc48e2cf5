#!/usr/bin/env python3
"""compare-view.py DIR WALK -- does a UnixFS walk (unixfs_walk.mjs output, one JSON object per
line) show the tree under DIR?

Every directory, regular file and symlink under DIR (not followed) must be in the walk with the
same type, permission bits (setuid/setgid/sticky included; not for symlinks), mtime (seconds and
nanoseconds), size and sha256 (files) and target (symlinks); the walk must show nothing else.
Devices, fifos and sockets have no UnixFS form and must be absent from the walk. Owners and
xattrs are not compared (UnixFS has no place for them). Prints each difference (at most 50) and
exits 1 if there is any; a one-line summary and exit 0 otherwise. Independent of shp's code.
"""
import hashlib, json, os, stat, sys


def tree(root):
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files + ([] if d != root else ['.']):
            p = os.path.join(d, n) if n != '.' else root
            rel = os.path.relpath(p, root)
            rel = '' if rel == '.' else rel
            st = os.lstat(p)
            m = st.st_mode
            rec = {'mtime': [st.st_mtime_ns // 1_000_000_000, st.st_mtime_ns % 1_000_000_000]}
            if stat.S_ISDIR(m):
                rec.update(type='dir', mode=stat.S_IMODE(m))
            elif stat.S_ISLNK(m):
                rec.update(type='symlink', target=os.readlink(p))
            elif stat.S_ISREG(m):
                h = hashlib.sha256()
                with open(p, 'rb') as f:
                    for b in iter(lambda: f.read(1 << 20), b''):
                        h.update(b)
                rec.update(type='file', mode=stat.S_IMODE(m), size=st.st_size, sha256=h.hexdigest())
            else:
                rec['type'] = 'special'
            out[rel] = rec
    return out


def main():
    want = tree(sys.argv[1])
    got = {}
    with open(sys.argv[2]) as f:
        for line in f:
            e = json.loads(line)
            rec = {k: e[k] for k in ('type', 'mtime', 'size', 'sha256', 'target') if k in e}
            if e['type'] != 'symlink':
                rec['mode'] = e['mode']
            got[e['path']] = rec
    diffs = []
    for p, w in sorted(want.items()):
        g = got.pop(p, None)
        if w['type'] == 'special':
            if g is not None:
                diffs.append(f'{p!r}: a device/fifo/socket, but the view has {g}')
        elif g is None:
            diffs.append(f'{p!r}: missing from the view ({w})')
        elif g != w:
            diffs.append(f'{p!r}: directory has {w}, view has {g}')
    for p, g in sorted(got.items()):
        diffs.append(f'{p!r}: only in the view ({g})')
    for d in diffs[:50]:
        print(d)
    if diffs:
        print(f'{len(diffs)} differences')
        sys.exit(1)
    n = sum(1 for w in want.values() if w['type'] != 'special')
    print(f'same tree: {n} paths ({sum(1 for w in want.values() if w["type"] == "file")} files)')


main()
