#!/usr/bin/env python3
"""benches/bitswap.py -- station → station over bitswap vs Kubo → Kubo over bitswap, same data, same run.

    benches/bitswap.py [--mb 250] [--runs 3]

One file of MB random megabytes (incompressible, so neither side gains from dedup or compression):
- shp: the file is the only file of a one-layer OCI image (umoci, uncompressed layer); station A holds
  it, station B (an empty home) connects to A and runs `shp fetch ROOT` — the whole DAG over bitswap.
- Kubo 0.22 (PyPI kubo-python, via tests/interop/kubo/kubo_peer.py): Kubo A `add`s the file, Kubo B
  connects and `pin`s the root — the whole UnixFS DAG over bitswap.
Both on 127.0.0.1 with every process started and stopped here. Each run uses fresh receiving homes
or repos, removed (and the removal synced) before the next run; runs are interleaved. The work
directory is made under TMPDIR: TMPDIR=/dev/shm takes the disk out of both sides' figures. Prints each run, the medians, MB/s and the ratio shp/Kubo throughput.
Run by hand, not in CI: quote the ratio, not the seconds. Needs umoci, python3, kubo-python and a
release build of shp (built if missing; SHP=path overrides).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHP = os.environ.get("SHP", os.path.join(ROOT, "target/release/shp"))
KUBO = os.path.join(ROOT, "tests/interop/kubo/kubo_peer.py")


def run(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


class Station:
    def __init__(self, home):
        self.home = home
        self.p = subprocess.Popen(
            [SHP, "--home", home, "start", "--listen", "127.0.0.1:0", "--p2p-listen", "/ip4/127.0.0.1/tcp/0",
             "--no-mdns", "--log-level", "warn"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.p.stdout.readline()
        assert line.startswith("listening"), line
        self.addr = json.loads(run(SHP, "--home", home, "addrs", "--json"))["addrs"][0]

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


class Kubo:
    def __init__(self, repo):
        self.p = subprocess.Popen([sys.executable, KUBO, repo, "--max-seconds", "900"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        info = json.loads(self.p.stdout.readline())
        self.addr = f"{info['addrs'][0]}/p2p/{info['id']}"

    def ask(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        r = json.loads(self.p.stdout.readline())
        assert r.get("ok"), f"kubo {cmd}: {r}"
        return r

    def stop(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.wait(30)
        except Exception:
            self.p.kill()
            self.p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=250)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    if not os.access(SHP, os.X_OK):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "shp-cli"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="shp-bitswap-bench.")
    procs = []
    try:
        data = os.path.join(work, "data.bin")
        with open(data, "wb") as f:
            for _ in range(a.mb):
                f.write(os.urandom(1 << 20))
        lay = os.path.join(work, "layout")
        run("umoci", "init", "--layout", lay)
        run("umoci", "new", "--image", lay + ":latest")
        bundle = os.path.join(work, "bundle")
        run("umoci", "unpack", "--rootless", "--image", lay + ":latest", bundle)
        shutil.copy(data, os.path.join(bundle, "rootfs", "data.bin"))
        run("umoci", "repack", "--image", lay + ":latest", bundle)
        home_a = os.path.join(work, "a")
        run(SHP, "--home", home_a, "init")
        root = run(SHP, "--home", home_a, "push", "-q", f"oci:{lay}:latest").strip()
        sa = Station(home_a)
        procs.append(sa)
        ka = Kubo(os.path.join(work, "kubo-a"))
        procs.append(ka)
        kroot = ka.ask(f"add {data}")["cid"]
        shp_t, kubo_t, moved = [], [], 0
        for i in range(a.runs):
            home_b = os.path.join(work, f"b{i}")
            run(SHP, "--home", home_b, "init")
            sb = Station(home_b)
            run(SHP, "--home", home_b, "connect", sa.addr)
            t = time.monotonic()
            rep = json.loads(run(SHP, "--home", home_b, "fetch", root, "--json"))
            shp_t.append(time.monotonic() - t)
            moved = rep["block_bytes"]
            sb.stop()
            kb = Kubo(os.path.join(work, f"kubo-b{i}"))
            kb.ask(f"connect {ka.addr}")
            t = time.monotonic()
            kb.ask(f"pin {kroot}")
            kubo_t.append(time.monotonic() - t)
            kb.stop()
            # Each run starts from the same state: the receivers' data removed and written back, so
            # no run pays for an earlier one's write-back or for memory the earlier ones hold.
            shutil.rmtree(home_b, ignore_errors=True)
            shutil.rmtree(os.path.join(work, f"kubo-b{i}"), ignore_errors=True)
            os.sync()
            print(f"run {i + 1}: shp {shp_t[-1]:.2f} s, kubo {kubo_t[-1]:.2f} s", flush=True)
        s, k = statistics.median(shp_t), statistics.median(kubo_t)
        mb = a.mb * (1 << 20) / 1e6
        print(f"{a.mb} MiB file ({moved} block bytes fetched by shp), medians of {a.runs}:")
        print(f"  station → station: {s:.2f} s, {mb / s:.0f} MB/s")
        print(f"  Kubo → Kubo:       {k:.2f} s, {mb / k:.0f} MB/s")
        print(f"  shp throughput / Kubo throughput: {k / s:.2f}×")
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
