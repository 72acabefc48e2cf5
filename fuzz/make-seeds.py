#!/usr/bin/env python3
"""make-seeds.py SHP_BINARY [OUT=fuzz/corpus]

Regenerates the seed corpus of every fuzz target from real inputs: tars written by GNU tar and by
Python's tarfile (ustar, GNU and PAX flavours), OCI manifests and an index, and the blocks and
CAR file shp itself writes for a tiny OCI image it pushes into a throw-away home. Seeds are kept
small (a few KiB) so libFuzzer mutates them quickly. Deterministic apart from GNU tar's version.
"""
import hashlib, io, json, os, shutil, subprocess, sys, tarfile, tempfile, zlib

SEP = b"\xffSHP"  # must match fuzz_targets/dag_decode.rs


def write(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pytar(fmt, long_names):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        def add(name, data=None, **kw):
            ti = tarfile.TarInfo(name)
            ti.mtime = 1704067200
            for k, v in kw.items():
                setattr(ti, k, v)
            if data is None:
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
        add("etc/", type=tarfile.DIRTYPE, mode=0o755)
        add("etc/hostname", b"shp\n", mode=0o644)
        add("etc/empty", b"", mode=0o644)
        add("bin/sh", type=tarfile.SYMTYPE, linkname="busybox")
        add("etc/hostname.link", type=tarfile.LNKTYPE, linkname="etc/hostname")
        add("data/bytes.bin", bytes(range(256)) * 3, mode=0o600, uid=1000, gid=1000)
        if long_names:
            add("usr/share/doc/" + "long-name-" * 12 + ".txt", b"long\n")
            add("usr/share/doc/gr\u00fc\u00dfe.txt", b"gruesse\n")
            add(".wh.motd", b"")
    return buf.getvalue()


def cbor_links(b):
    """The CIDs (tag 42) in a dag-cbor block, in order."""
    out, pos = [], 0

    def head():
        nonlocal pos
        ib = b[pos]; pos += 1
        major, info = ib >> 5, ib & 31
        if info < 24:
            return major, info
        n = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        v = int.from_bytes(b[pos:pos + n], "big"); pos += n
        return major, v

    def item():
        nonlocal pos
        major, n = head()
        if major in (2, 3):
            s = b[pos:pos + n]; pos += n
            return s
        if major == 4:
            for _ in range(n):
                item()
        elif major == 5:
            for _ in range(n):
                item(); item()
        elif major == 6:
            s = item()
            if n == 42:
                out.append(bytes(s[1:]))
    item()
    return out


def car_blocks(car):
    """(cid_bytes, data) of each section of a CARv1 file, header skipped."""
    def varint(pos):
        v = shift = 0
        while True:
            x = car[pos]; pos += 1
            v |= (x & 0x7f) << shift; shift += 7
            if not x & 0x80:
                return v, pos
    n, pos = varint(0)
    pos += n
    out = []
    while pos < len(car):
        n, pos = varint(pos)
        sec = car[pos:pos + n]; pos += n
        out.append((sec[:36], sec[36:]))
    return out


def tiny_layout(d):
    """An OCI layout with one image: a tiny uncompressed layer, its config, manifest, index."""
    blobs = os.path.join(d, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data):
        h = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, h), "wb") as f:
            f.write(data)
        return {"digest": "sha256:" + h, "size": len(data)}
    layer = pytar(tarfile.USTAR_FORMAT, False)
    ld = put(layer)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                      "diff_ids": [ld["digest"]]}, "config": {"Cmd": ["/bin/sh"]}}, separators=(",", ":")).encode()
    cd = put(cfg)
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cd},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **ld}]},
                     separators=(",", ":")).encode()
    md = put(man)
    with open(os.path.join(d, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(d, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   **md, "annotations": {"org.opencontainers.image.ref.name": "tiny"}}]}, f)
    return man


def gzip_seeds(out):
    """Seeds for gzip_members and recipe: members with optional header fields, a tail, records."""
    import gzip, zlib
    plain = gzip.compress(b"hello tar " * 50, compresslevel=6, mtime=0)
    named = b"\x1f\x8b\x08\x08\x00\x00\x00\x00\x00\x03layer.tar\x00" + zlib.compress(b"abc", 9)[2:-4] + \
        (zlib.crc32(b"abc")).to_bytes(4, "little") + (3).to_bytes(4, "little")
    write(out, "gzip_members", "python-6.gz", plain)
    write(out, "gzip_members", "named.gz", named)
    write(out, "gzip_members", "two-members-and-tail.gz", plain + named + b"\0" * 16)
    write(out, "gzip_members", "truncated.gz", plain[:len(plain) // 2])

    def text(t):
        b = t.encode()
        return bytes([0x60 + len(b)]) + b if len(b) < 24 else bytes([0x78, len(b)]) + b

    def bstr(b):
        return bytes([0x40 + len(b)]) + b if len(b) < 24 else bytes([0x58, len(b)]) + b

    header = plain[:10]
    # canonical dag-cbor maps: keys sorted by length, then bytewise
    write(out, "recipe", "single.cbor", b"\xa2" + text("header") + bstr(header) + text("profile") + text("zlib-1.2/6"))
    member = b"\xa2" + text("size") + b"\x19\x01\xf4" + text("header") + bstr(header)
    write(out, "recipe", "members.cbor", b"\xa3" + text("tail") + bstr(b"\0\0") + text("members") + b"\x82" + member + member
          + text("profile") + text("zlib-1.2/9"))
    write(out, "recipe", "unknown-profile.cbor", b"\xa2" + text("header") + bstr(header) + text("profile") + text("nope/1"))


def inflate_seeds(out):
    """Seeds for inflate: raw deflate with sync flushes (as pgzip and pigz write), stored blocks
    full of the flush bytes, and bytes after the stream."""
    def flushed(level, parts):
        c = zlib.compressobj(level, zlib.DEFLATED, -15)
        body = b"".join(c.compress(p) + c.flush(zlib.Z_SYNC_FLUSH) for p in parts[:-1])
        return body + c.compress(parts[-1]) + c.flush()
    flush = b"\x00\x00\xff\xff"
    write(out, "inflate", "flushed-1", flushed(1, [b"hello " * 50, flush * 40, b"world" * 30]) + b"after")
    write(out, "inflate", "flushed-6", flushed(6, [bytes(range(256)) * 20, b"", b"tail"]))
    write(out, "inflate", "stored-0", flushed(0, [flush * 100, b"x" * 10]) + b"\x1f\x8b")
    write(out, "inflate", "unflushed-9", flushed(9, [b"no flush points " * 100]))


def main():
    shp = os.path.abspath(sys.argv[1])
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    tmp = tempfile.mkdtemp(prefix="shp-seeds.")
    try:
        gzip_seeds(out)
        inflate_seeds(out)

        # --- tar_split ------------------------------------------------------------------
        for name, fmt, long_names in [("python-ustar.tar", tarfile.USTAR_FORMAT, False),
                                      ("python-gnu.tar", tarfile.GNU_FORMAT, True),
                                      ("python-pax.tar", tarfile.PAX_FORMAT, True)]:
            write(out, "tar_split", name, pytar(fmt, long_names))
        root = os.path.join(tmp, "root")
        os.makedirs(os.path.join(root, "d"))
        with open(os.path.join(root, "d", "f.txt"), "w") as f:
            f.write("hello from GNU tar\n")
        os.symlink("f.txt", os.path.join(root, "d", "l"))
        with open(os.path.join(root, "n" * 120), "w") as f:
            f.write("long name\n")
        for fmt in ["gnu", "posix"]:
            p = os.path.join(tmp, f"gnu-{fmt}.tar")
            subprocess.run(["tar", f"--format={fmt}", "--sort=name", "--mtime=@1704067200", "--owner=0",
                            "--group=0", "--numeric-owner", "-C", root, "-cf", p, "."], check=True)
            data = open(p, "rb").read()
            write(out, "tar_split", f"gnu-tar-{fmt}.tar", data.rstrip(b"\0") + b"\0" * 1024)
        write(out, "tar_split", "truncated.tar", pytar(tarfile.USTAR_FORMAT, False)[:700])

        # --- an image pushed by shp: manifest, blocks, CAR ----------------------------
        layout = os.path.join(tmp, "oci")
        man = tiny_layout(layout)
        home = os.path.join(tmp, "home")
        env = dict(os.environ, SHP_HOME=home)
        subprocess.run([shp, "init"], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([shp, "push", "-q", f"oci:{layout}:tiny"], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        car_path = os.path.join(tmp, "tiny.car")
        subprocess.run([shp, "car", "export", "tiny", car_path], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        car = open(car_path, "rb").read()
        write(out, "car", "shp-tiny-image.car", car)
        write(out, "car", "truncated.car", car[:len(car) // 2])
        blocks = car_blocks(car)

        kinds = {0x71: [], 0x55: []}
        for cid, data in blocks:
            kinds[cid[1]].append((cid, data))
        for i, (cid, data) in enumerate(kinds[0x71]):
            write(out, "dag_cbor", f"shp-node-{i}.cbor", data)
            write(out, "dag_decode", f"shp-node-{i}.cbor", data)
        write(out, "dag_cbor", "canonical-map.cbor", bytes.fromhex("a3616101616302626262f6"))
        # the whole DAG, children before parents, root last: the harness keeps links to earlier blocks
        by_cid = dict(blocks)
        order, seen = [], set()

        def visit(c):
            if c in seen:
                return
            seen.add(c)
            if c[1] == 0x71:
                for l in cbor_links(by_cid[c]):
                    visit(l)
            order.append(c)
        visit(blocks[0][0])
        write(out, "dag_decode", "shp-tiny-image-dag", SEP.join(by_cid[c] for c in order))
        for cid, _ in blocks[:3]:
            write(out, "cid", f"bin-{cid[1]:02x}-{cid[-1]:02x}", cid)
        base32 = "abcdefghijklmnopqrstuvwxyz234567"

        def b32(b):
            bits = "".join(f"{x:08b}" for x in b)
            bits += "0" * (-len(bits) % 5)
            return "b" + "".join(base32[int(bits[i:i + 5], 2)] for i in range(0, len(bits), 5))
        for cid, _ in blocks[:3]:
            write(out, "cid", f"text-{cid[1]:02x}-{cid[-1]:02x}", b32(cid).encode())
        write(out, "cid", "text-upper", b32(blocks[0][0]).upper().encode())
        write(out, "cid", "cidv0", b"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG")

        # --- manifest -------------------------------------------------------------------
        write(out, "manifest", "oci-manifest.json", man)
        write(out, "manifest", "oci-layout-index.json", open(os.path.join(layout, "index.json"), "rb").read())
        docker = json.loads(man)
        docker["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
        docker["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
        docker["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
        write(out, "manifest", "docker-v2-manifest.json", json.dumps(docker, indent=3).encode())
        md = json.loads(open(os.path.join(layout, "index.json")).read())["manifests"][0]
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            {**md, "platform": {"os": "linux", "architecture": "amd64"}},
            {**md, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]}
        del index["manifests"][0]["annotations"], index["manifests"][1]["annotations"]
        write(out, "manifest", "oci-index.json", json.dumps(index).encode())
        write(out, "manifest", "schema1.json", b'{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}')

        # --- reference ------------------------------------------------------------------
        for i, r in enumerate(["oci:/var/lib/images:latest", "oci:dir", "docker-archive:x.tar:foo/bar:v1",
                               "docker-archive:x.tar:@1", "docker://busybox:latest",
                               "bafyreigrytutzga2qgti5ntjxubwd3tmqftdwlibe2apxhsv44d7jtzbgq"]):
            write(out, "reference", f"ref-{i}", r.encode())
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
