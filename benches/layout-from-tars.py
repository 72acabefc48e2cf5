#!/usr/bin/env python3
"""layout-from-tars.py OUT_LAYOUT TAG TAR... -- writes (or adds to) an OCI image layout holding one
image, TAG, whose layers are the given uncompressed tars in order (media type
application/vnd.oci.image.layer.v1.tar; config diff_ids = the tars' digests). Blobs are hard-linked
when the tar is on the same filesystem, else copied. Prints nothing.

extract-layers mode: layout-from-tars.py --extract LAYOUT OUTDIR -- writes every distinct layer of
every image in LAYOUT, uncompressed, to OUTDIR/<diff_id>.tar and prints their paths (in index
order, first appearance)."""
import gzip, hashlib, json, os, shutil, subprocess, sys

REF = "org.opencontainers.image.ref.name"


def sha256_file(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest(), os.path.getsize(p)


def put_bytes(blobs, data):
    h = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, h), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + h, "size": len(data)}


def make(out, tag, tars):
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    layers = []
    for t in tars:
        h, size = sha256_file(t)
        dst = os.path.join(blobs, h)
        if not os.path.exists(dst):
            try:
                os.link(t, dst)
            except OSError:
                shutil.copyfile(t, dst)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + h, "size": size})
    cfg = put_bytes(blobs, json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                                       "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}).encode())
    man = put_bytes(blobs, json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
                                       "layers": layers}).encode())
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    idx_path = os.path.join(out, "index.json")
    idx = json.load(open(idx_path)) if os.path.exists(idx_path) else {"schemaVersion": 2, "manifests": []}
    idx["manifests"] = [m for m in idx["manifests"] if m.get("annotations", {}).get(REF) != tag]
    idx["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **man, "annotations": {REF: tag}})
    with open(idx_path, "w") as f:
        json.dump(idx, f)


def extract(layout, outdir):
    os.makedirs(outdir, exist_ok=True)
    blob = lambda d: os.path.join(layout, "blobs", "sha256", d.split(":", 1)[1])
    seen = []
    for m in json.load(open(os.path.join(layout, "index.json")))["manifests"]:
        man = json.load(open(blob(m["digest"])))
        for l in man.get("layers", []):
            raw = open(blob(l["digest"]), "rb").read()
            if raw[:2] == b"\x1f\x8b":
                data = gzip.decompress(raw)
            elif raw[:4] == b"\x28\xb5\x2f\xfd":
                data = subprocess.run(["zstd", "-dc"], input=raw, stdout=subprocess.PIPE, check=True).stdout
            else:
                data = raw
            p = os.path.join(outdir, hashlib.sha256(data).hexdigest()[:16] + ".tar")
            if p not in seen:
                seen.append(p)
                with open(p, "wb") as f:
                    f.write(data)
    print("\n".join(seen))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--extract":
        extract(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4:
        make(sys.argv[1], sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
