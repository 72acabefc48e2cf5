#!/usr/bin/env python3
"""craft.py [OUT=fuzz/artifacts-found] -- writes the hand-made inputs that show the bugs listed in
README.md, in the dag_decode target's format (blocks joined by b"\\xffSHP", root last; links
point at earlier blocks by their real CIDs). Replay one with
`cargo fuzz run -s none dag_decode artifacts-found/dag_decode/NAME -- -timeout=10`."""
import hashlib, json, os, sys

SEP = b"\xffSHP"
RAW, DAG_CBOR = 0x55, 0x71


class Link:
    def __init__(self, codec, data):
        self.cid = bytes([1, codec, 0x12, 0x20]) + hashlib.sha256(data).digest()


def head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")


def enc(v):
    """Canonical dag-cbor (the subset shp uses)."""
    if isinstance(v, bool):
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):
        return head(0, v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return head(3, len(b)) + b
    if isinstance(v, Link):
        return b"\xd8\x2a" + enc(b"\0" + v.cid)
    if isinstance(v, list):
        return head(4, len(v)) + b"".join(enc(x) for x in v)
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: (len(k.encode()), k.encode()))
        return head(5, len(v)) + b"".join(enc(k) + enc(v[k]) for k in keys)
    raise TypeError(v)


def tree(leaf, leaf_codec, fanout, levels):
    """Blocks of a link tree: `levels` nodes each naming the level below `fanout` times."""
    blocks, below, codec = [leaf], leaf, leaf_codec
    for _ in range(levels):
        below = enc({"l": [Link(codec, below)] * fanout})
        codec = DAG_CBOR
        blocks.append(below)
    return blocks


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    d = os.path.join(out, "dag_decode")
    os.makedirs(d, exist_ok=True)
    # 1. 16^8 empty raw leaves under 8 link-tree levels: ~5 KiB of blocks that DagReader walks
    #    for ~4e9 block reads while producing no byte (a hang, whatever the caller's byte bound).
    with open(os.path.join(d, "hang-fanout-empty-leaves"), "wb") as f:
        f.write(SEP.join(tree(b"", RAW, 16, 8)))
    # 2. An image root whose top blob says it is a 2-byte manifest but whose data is a link tree
    #    standing for 16^6 KiB = 16 GiB: ImageRoot::blobs reads the "manifest" to its end with
    #    read_to_end before BlobNode::open's size/sha256 check can fire (memory exhaustion).
    blocks = tree(b"A" * 1024, RAW, 16, 6)
    top = enc({"t": "blob", "enc": "raw", "data": [Link(DAG_CBOR, blocks[-1])], "digest": b"\0" * 32, "size": 2})
    desc = json.dumps({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": "sha256:" + "0" * 64, "size": 2})
    root = enc({"shp": 1, "t": "image", "profiles": 1, "top": Link(DAG_CBOR, top), "desc": desc})
    with open(os.path.join(d, "oom-manifest-fanout"), "wb") as f:
        f.write(SEP.join(blocks + [top, root]))


if __name__ == "__main__":
    main()
