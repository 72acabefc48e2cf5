#!/usr/bin/env python3
"""relayer.py LAYOUT SRC_TAG DST_TAG KIND

Writes image DST_TAG into the OCI layout LAYOUT: a copy of image SRC_TAG whose every layer is the same
uncompressed tar (same diff_id, so the config blob is shared) re-encoded as KIND:

  none         plain tar                       application/vnd.oci.image.layer.v1.tar
  zstd         `zstd -3` CLI on the tar file   application/vnd.oci.image.layer.v1.tar+zstd
  gzip-python  Python's gzip.GzipFile, level 6, application/vnd.oci.image.layer.v1.tar+gzip
               mtime 0, no file name: header 1f8b 0800 00000000 00 ff (OS byte 255; note that
               gzip.compress(data, 6, mtime=0) differs: CPython >= 3.11 hands it to zlib, OS byte 3)

Source layers may be tar, gzip or zstd (OCI or Docker media types); each is checked against the
manifest's digest and size and against the config's diff_id before it is re-encoded. The new manifest
is the source manifest with only the layer descriptors replaced; index.json gets (or has replaced) an
entry annotated org.opencontainers.image.ref.name=DST_TAG. Prints nothing; exits non-zero with a
message on any error. Output bytes depend on the zlib (gzip-python) and zstd versions installed.
"""

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

REF_NAME = "org.opencontainers.image.ref.name"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
KINDS = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "gzip-python": "application/vnd.oci.image.layer.v1.tar+gzip",
}
SOURCE_ENCODINGS = {
    "application/vnd.oci.image.layer.v1.tar": "none",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
    "application/vnd.docker.image.rootfs.diff.tar": "none",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
}
BUF = 1 << 20


class Error(Exception):
    pass


def blob_path(layout, digest):
    algo, _, hexdigest = digest.partition(":")
    if algo != "sha256" or len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
        raise Error(f"unsupported or malformed digest {digest!r}")
    return os.path.join(layout, "blobs", "sha256", hexdigest)


def sha256_file(path):
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(BUF):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def read_blob(layout, desc):
    """Reads a (small) blob and checks it against its descriptor."""
    path = blob_path(layout, desc["digest"])
    with open(path, "rb") as f:
        data = f.read()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if digest != desc["digest"] or len(data) != desc["size"]:
        raise Error(f"blob {desc['digest']} ({desc['size']} bytes) holds {digest} ({len(data)} bytes)")
    return data


def store_file(layout, tmp_path):
    """Moves a finished temp file into blobs/ under its digest; returns (digest, size)."""
    digest, size = sha256_file(tmp_path)
    final = blob_path(layout, digest)
    if os.path.exists(final):
        os.unlink(tmp_path)
    else:
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, final)
    return digest, size


def store_bytes(layout, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    final = blob_path(layout, digest)
    if not os.path.exists(final):
        tmp = final + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    return digest, len(data)


def decompress(layout, desc, encoding, out_path):
    src = blob_path(layout, desc["digest"])
    digest, size = sha256_file(src)
    if digest != desc["digest"] or size != desc["size"]:
        raise Error(f"layer blob {desc['digest']} ({desc['size']} bytes) holds {digest} ({size} bytes)")
    if encoding == "none":
        shutil.copyfile(src, out_path)
    elif encoding == "gzip":
        with gzip.open(src, "rb") as fin, open(out_path, "wb") as fout:
            shutil.copyfileobj(fin, fout, BUF)
    elif encoding == "zstd":
        subprocess.run(["zstd", "-d", "-q", "-f", "-o", out_path, src], check=True)
    else:
        raise AssertionError(encoding)


def compress(kind, tar_path, out_path):
    if kind == "none":
        shutil.copyfile(tar_path, out_path)
    elif kind == "zstd":
        subprocess.run(["zstd", "-3", "-q", "-f", "-o", out_path, tar_path], check=True)
    elif kind == "gzip-python":
        with open(tar_path, "rb") as fin, open(out_path, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=raw, mtime=0) as fout:
                shutil.copyfileobj(fin, fout, BUF)
    else:
        raise AssertionError(kind)


def relayer(layout, src_tag, dst_tag, kind):
    if kind not in KINDS:
        raise Error(f"unknown KIND {kind!r}: want one of {', '.join(KINDS)}")
    index_path = os.path.join(layout, "index.json")
    with open(index_path, "rb") as f:
        index = json.load(f)
    found = [d for d in index.get("manifests", []) if d.get("annotations", {}).get(REF_NAME) == src_tag]
    if len(found) != 1:
        raise Error(f"{index_path}: {len(found)} entries named {src_tag!r}, want 1")
    src_desc = found[0]
    if src_desc.get("mediaType") not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise Error(f"{src_tag!r} is a {src_desc.get('mediaType')}, not an image manifest")
    manifest = json.loads(read_blob(layout, src_desc))
    if manifest.get("mediaType", OCI_MANIFEST) != OCI_MANIFEST:
        raise Error(f"{src_tag!r}: only OCI image manifests can be re-layered")
    config = json.loads(read_blob(layout, manifest["config"]))
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(manifest["layers"]):
        raise Error(f"{src_tag!r}: {len(manifest['layers'])} layers but {len(diff_ids)} diff_ids")

    new_layers = []
    blobs = os.path.join(layout, "blobs", "sha256")
    with tempfile.TemporaryDirectory(dir=blobs, prefix=".relayer-") as tmp:
        for i, (desc, diff_id) in enumerate(zip(manifest["layers"], diff_ids)):
            encoding = SOURCE_ENCODINGS.get(desc["mediaType"])
            if encoding is None:
                raise Error(f"layer {i} ({desc['digest']}): unsupported media type {desc['mediaType']}")
            tar_path = os.path.join(tmp, f"layer{i}.tar")
            decompress(layout, desc, encoding, tar_path)
            got, _ = sha256_file(tar_path)
            if got != diff_id:
                raise Error(f"layer {i} ({desc['digest']}) uncompresses to {got}, but its diff_id is {diff_id}")
            out_path = os.path.join(tmp, f"layer{i}.out")
            compress(kind, tar_path, out_path)
            os.unlink(tar_path)
            digest, size = store_file(layout, out_path)
            layer = dict(desc)
            layer.update(mediaType=KINDS[kind], digest=digest, size=size)
            new_layers.append(layer)

    manifest["layers"] = new_layers
    data = json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode()
    digest, size = store_bytes(layout, data)
    entry = {"mediaType": OCI_MANIFEST, "digest": digest, "size": size, "annotations": {REF_NAME: dst_tag}}
    index["manifests"] = [
        d for d in index.get("manifests", []) if d.get("annotations", {}).get(REF_NAME) != dst_tag
    ] + [entry]
    tmp_index = index_path + ".tmp"
    with open(tmp_index, "w") as f:
        json.dump(index, f, separators=(",", ":"))
    os.replace(tmp_index, index_path)


def main(argv):
    if len(argv) != 5:
        sys.stderr.write(__doc__)
        return 2
    try:
        relayer(*argv[1:])
    except (Error, OSError, KeyError, ValueError, subprocess.CalledProcessError) as e:
        sys.stderr.write(f"relayer.py: {type(e).__name__}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
