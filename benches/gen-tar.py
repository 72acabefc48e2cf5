#!/usr/bin/env python3
"""gen-tar.py OUT.tar MB [SEED] -- a tar of about MB megabytes of pseudo-random files (sizes from
1 KiB to 8 MiB, log-uniform, in directories of 100), deterministic for a given seed. Random bytes do
not compress, so it measures chunking, hashing and storage, not compression luck."""
import io, math, random, sys, tarfile

out, mb = sys.argv[1], int(sys.argv[2])
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
target = mb * 1000 * 1000
total = i = 0
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    while total < target:
        size = min(int(math.exp(rng.uniform(math.log(1024), math.log(8 << 20)))), target - total)
        ti = tarfile.TarInfo(f"data/d{i // 100:04d}/f{i:06d}.bin")
        ti.size, ti.mtime, ti.mode = size, 1704067200, 0o644
        t.addfile(ti, io.BytesIO(rng.randbytes(size)))
        total += size
        i += 1
