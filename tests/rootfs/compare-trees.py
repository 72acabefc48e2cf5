#!/usr/bin/env python3
"""compare-trees.py A B -- are two root file systems the same tree?

Compares every path under A and B (without following symlinks): its type, permission bits
(setuid/setgid/sticky included), owner, group, size, mtime (to the nanosecond unless --mtime-s),
symlink target, device numbers, extended attributes, the sha256 of every regular file, and which
paths share an inode (hard links). Directory mtimes are compared too. Prints each difference
(at most 50) and exits 1 if there is any; prints a one-line summary and exits 0 otherwise.
Written for shp's tests (`shp unpack` against `umoci unpack`); independent of shp's code.
"""
import hashlib, os, stat, sys

def walk(root, mtime_s):
    out, inodes = {}, {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files + ([] if d != root else ['.']):
            p = os.path.join(d, n) if n != '.' else root
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            rec = {
                'type': stat.S_IFMT(st.st_mode), 'perm': stat.S_IMODE(st.st_mode),
                'uid': st.st_uid, 'gid': st.st_gid,
                'mtime': st.st_mtime_ns // 1_000_000_000 if mtime_s else st.st_mtime_ns,
            }
            try:
                rec['xattrs'] = sorted((k, os.getxattr(p, k, follow_symlinks=False)) for k in os.listxattr(p, follow_symlinks=False))
            except OSError:
                rec['xattrs'] = []
            if stat.S_ISLNK(st.st_mode):
                rec['target'] = os.readlink(p)
                rec['perm'] = None  # symlink modes carry no meaning on Linux
            elif stat.S_ISREG(st.st_mode):
                rec['size'] = st.st_size
                h = hashlib.sha256()
                with open(p, 'rb') as f:
                    for b in iter(lambda: f.read(1 << 20), b''):
                        h.update(b)
                rec['sha256'] = h.hexdigest()
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                rec['rdev'] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            out[rel] = rec
    links = sorted(tuple(sorted(v)) for v in inodes.values() if len(v) > 1)
    return out, links

def main():
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    mtime_s = '--mtime-s' in sys.argv
    if len(args) != 2:
        sys.exit(__doc__)
    a, la = walk(args[0], mtime_s)
    b, lb = walk(args[1], mtime_s)
    diffs = []
    for p in sorted(set(a) | set(b)):
        if p not in a:
            diffs.append(f'only in B: {p}')
        elif p not in b:
            diffs.append(f'only in A: {p}')
        else:
            for k in sorted(set(a[p]) | set(b[p])):
                if a[p].get(k) != b[p].get(k):
                    diffs.append(f'{p}: {k}: {a[p].get(k)!r} != {b[p].get(k)!r}')
    if la != lb:
        diffs.append(f'hard link groups differ: {[g for g in la if g not in lb][:5]} vs {[g for g in lb if g not in la][:5]}')
    for d in diffs[:50]:
        print(d)
    if diffs:
        print(f'{len(diffs)} differences', file=sys.stderr)
        sys.exit(1)
    files = sum(1 for r in a.values() if 'sha256' in r)
    print(f'same tree: {len(a)} paths, {files} files, {len(la)} hard link groups')

if __name__ == '__main__':
    main()
