//! `shp mount`, `shp mounts`, `shp umount`: one layer as an overlayfs lower directory (merged by
//! the kernel's overlayfs and compared with `shp unpack`), reads that fail with EIO on a corrupt
//! chunk, and the mount table. Needs root and /dev/fuse; SHP_REQUIRE_ROOT=1 makes a skip a failure.
//! (The merged view against `shp unpack` and umoci: tests/unpack.rs.)

mod common;

use common::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

fn fuse_or_skip() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid: u32 = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap()
        .parse()
        .unwrap();
    let ok = euid == 0 && Path::new("/dev/fuse").exists();
    if !ok {
        assert!(
            std::env::var("SHP_REQUIRE_ROOT").as_deref() != Ok("1"),
            "these tests need root and /dev/fuse"
        );
        eprintln!("skipping: needs root and /dev/fuse");
    }
    ok
}

/// A tar of `(path, kind, bytes)`: `d` directory, `f` file (0644), `s` symlink to the bytes.
fn tar_of(entries: &[(&str, char, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, k, d) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_path(p).unwrap();
        h.set_mtime(1_700_000_000);
        match k {
            'd' => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            's' => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name(std::str::from_utf8(d).unwrap()).unwrap();
                h.set_mode(0o777);
                h.set_size(0);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            _ => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(d.len() as u64);
                h.set_cksum();
                b.append(&h, *d).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn image_of(h: &ShpHome, layers: &[Vec<u8>], tag: &str) -> String {
    let l = layout_of_tars(h, &format!("layout-{}", tag.replace(':', "-")), layers);
    h.push(&oci_ref(&l.dir, "t"), &["--tag", tag]);
    tag.to_string()
}

fn compare(a: &Path, b: &Path) -> (bool, String) {
    let out = run_tool(
        Command::new("python3")
            .arg(repo_root().join("tests/rootfs/compare-trees.py"))
            .arg(a)
            .arg(b),
    );
    (out.status.success(), format!("{}{}", stdout(&out), stderr(&out)))
}

#[test]
fn a_layer_mounts_as_an_overlayfs_lower_directory() {
    if !fuse_or_skip() {
        return;
    }
    let h = ShpHome::new();
    let big = Rng(3).bytes(700_000);
    let l0 = tar_of(&[
        ("a/", 'd', b""),
        ("a/x", 'f', b"lower x"),
        ("b/", 'd', b""),
        ("b/y", 'f', b"lower y"),
        ("c", 'f', b"lower c"),
        ("big", 'f', &big),
        ("lib", 's', b"a"),
    ]);
    let l1 = tar_of(&[
        (".wh.c", 'f', b""),
        ("b/", 'd', b""),
        ("b/.wh..wh..opq", 'f', b""),
        ("b/z", 'f', b"upper z"),
        ("a/", 'd', b""),
        ("a/new", 'f', b"upper new"),
    ]);
    let img = image_of(&h, &[l0, l1], "ov:t");
    let merged = h.scratch("unpacked");
    h.ok(&["unpack", &img, merged.to_str().unwrap()]);

    // The upper layer alone, as overlayfs wants it: whiteouts as 0:0 devices, opaque as an xattr.
    let top = Mount::start(&h, &img, &["--layer", "1"]).expect("mount layer 1");
    assert_eq!(top.info["layers"].as_array().unwrap().len(), 1, "{}", top.info);
    let c = std::fs::symlink_metadata(top.dir.join("c")).unwrap();
    assert!(
        c.file_type().is_char_device() && c.rdev() == 0,
        "c is a whiteout device"
    );
    let opaque = run_tool(Command::new("python3").arg("-c").arg(
        "import os,sys; sys.stdout.write(os.getxattr(sys.argv[1], 'trusted.overlay.opaque', follow_symlinks=False).decode())",
    ).arg(top.dir.join("b")));
    assert_eq!(stdout(&opaque), "y", "b is opaque: {}", stderr(&opaque));
    assert!(!top.dir.join("b/.wh..wh..opq").exists() && !top.dir.join(".wh.c").exists());
    assert_eq!(std::fs::read(top.dir.join("a/new")).unwrap(), b"upper new");
    // The same layer by digest.
    let digest = top.info["layers"][0].as_str().unwrap().to_string();
    let by_digest = Mount::start(&h, &img, &["--layer", &digest]).expect("mount by digest");
    assert_eq!(by_digest.info["layers"][0], digest.as_str());
    drop(by_digest);
    let bottom = Mount::start(&h, &img, &["--layer", "0"]).expect("mount layer 0");
    assert_eq!(
        std::fs::read(bottom.dir.join("big")).unwrap(),
        big,
        "a multi-chunk file, bit for bit"
    );

    // The kernel's overlayfs over the two mounts gives the tree shp unpack writes.
    let ov = h.scratch("overlay");
    std::fs::create_dir_all(&ov).unwrap();
    let opts = format!("lowerdir={}:{}", top.dir.display(), bottom.dir.display());
    let st = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&ov)
        .status()
        .unwrap();
    assert!(st.success(), "overlayfs over two shp mounts ({opts})");
    let (same, diff) = compare(&merged, &ov);
    let _ = Command::new("umount").arg(&ov).status();
    assert!(same, "overlayfs(shp layers) vs shp unpack:\n{diff}");

    // No such layer: a clear error naming what there is.
    let err = Mount::start(&h, &img, &["--layer", "7"]).err().expect("refused");
    assert!(err.contains("no such layer") && err.contains("2 layers"), "{err}");
}

#[test]
fn a_corrupt_chunk_is_an_eio_never_wrong_bytes() {
    if !fuse_or_skip() {
        return;
    }
    let h = ShpHome::new();
    let data = Rng(11).bytes(600_000);
    let img = image_of(&h, &[tar_of(&[("f", 'f', &data), ("ok", 'f', b"fine")])], "bad:t");
    // Flip one byte of the file's data where the store keeps it (random bytes stay verbatim in
    // the packs' zstd frames).
    let needle = &data[300_000..300_064];
    let mut flipped = false;
    for p in walk(&h.dir.join("store")) {
        let mut b = std::fs::read(&p).unwrap();
        if let Some(at) = b.windows(needle.len()).position(|w| w == needle) {
            b[at + 10] ^= 0x40;
            std::fs::write(&p, &b).unwrap();
            flipped = true;
        }
    }
    assert!(flipped, "the file's bytes are in a pack");
    let mut m = Mount::start(&h, &img, &[]).expect("the tree needs no file data");
    assert_eq!(std::fs::read(m.dir.join("ok")).unwrap(), b"fine");
    let err = std::fs::read(m.dir.join("f")).expect_err("a read of the corrupt chunk fails");
    assert_eq!(err.raw_os_error(), Some(5), "EIO: {err}");
    // The first bytes (another chunk) still read.
    use std::io::Read;
    let mut head = vec![0u8; 4096];
    std::fs::File::open(m.dir.join("f"))
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert_eq!(head, data[..4096]);
    let log = m.log();
    assert!(
        log.contains("read of /f") && log.contains("bafk"),
        "the log names the file and the block: {log}"
    );
    m.stop();
}

/// The bytes a lazy mount's unmount line says it fetched from peers.
fn fetched_bytes(log: &str) -> u64 {
    log.split(" blocks (")
        .nth(1)
        .and_then(|r| r.split(" bytes) fetched from peers on demand").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no fetch count: {log}"))
}

/// The blocks a lazy mount's unmount line says it fetched from peers.
fn fetched_blocks(log: &str) -> u64 {
    log.rsplit(" blocks (")
        .nth(1)
        .and_then(|r| r.rsplit("; ").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no block count: {log}"))
}

fn walk(d: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn mounts_are_listed_and_umount_ends_them() {
    if !fuse_or_skip() {
        return;
    }
    let h = ShpHome::new();
    let img = image_of(&h, &[tar_of(&[("hello", 'f', b"hi\n")])], "tab:t");
    let mut m = Mount::start(&h, &img, &[]).expect("mount");
    assert_eq!(std::fs::read(m.dir.join("hello")).unwrap(), b"hi\n");
    let list = h.json(&["mounts"]);
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!(rows[0]["dir"], m.dir.to_str().unwrap());
    assert_eq!(rows[0]["image"], "tab:t");
    assert_eq!(rows[0]["pid"], m.info["pid"]);
    for k in ["root", "manifest", "layers", "started"] {
        assert!(rows[0].get(k).is_some(), "mounts row lacks {k}: {list}");
    }
    // One mount per mount point; a file is no mount point; an unknown image is not found (3).
    let (code, err) = h.fails(&["mount", &img, m.dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already mounted"), "{err}");
    let file = h.scratch("a-file");
    std::fs::write(&file, b"").unwrap();
    let (code, err) = h.fails(&["mount", &img, file.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a directory"), "{err}");
    let empty = h.scratch("empty-dir");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, err) = h.fails(&["mount", "no-such:image", empty.to_str().unwrap()]);
    assert_eq!(code, 3, "{err}");
    assert!(!is_mounted(&empty));
    let st = m.stop().unwrap();
    assert!(st.success(), "{st}: {}", m.log());
    assert!(!is_mounted(&m.dir));
    assert_eq!(h.json(&["mounts"]), serde_json::json!([]));
    let (code, err) = h.fails(&["umount", m.dir.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not an shp mount"), "{err}");
    // A mount whose process was killed (SIGKILL: no chance to unmount) is not listed, and
    // `shp umount` cleans it up.
    let mut m3 = Mount::start(&h, &img, &[]).expect("mount for a kill");
    let dir3 = m3.dir.clone();
    m3.kill();
    assert!(is_mounted(&dir3), "a killed FUSE server leaves its mount point mounted");
    assert_eq!(h.json(&["mounts"]), serde_json::json!([]), "a dead mount is not listed");
    h.ok(&["umount", dir3.to_str().unwrap()]);
    assert!(!is_mounted(&dir3), "shp umount unmounted the dead mount");
    // SIGTERM unmounts too.
    let m2 = Mount::start(&h, &img, &[]).expect("mount again");
    let dir = m2.dir.clone();
    drop(m2);
    assert!(!is_mounted(&dir), "SIGTERM unmounted {}", dir.display());
    assert_eq!(h.json(&["mounts"]), serde_json::json!([]));
}

#[test]
fn a_lazy_mount_reads_what_the_home_lacks_from_a_peer() {
    if !fuse_or_skip() {
        return;
    }
    // A holds the image and serves it over HTTP; B's home is empty.
    let a = ShpHome::new();
    let big = Rng(5).bytes(900_000);
    let img = image_of(
        &a,
        &[
            tar_of(&[("etc/", 'd', b""), ("etc/motd", 'f', b"lazy\n"), ("big", 'f', &big)]),
            tar_of(&[(".wh.big", 'f', b""), ("big2", 'f', &big[..400_000])]),
        ],
        "lazy:t",
    );
    let root = a.json(&["inspect", &img])["root"].as_str().unwrap().to_string();
    let unpacked = a.scratch("unpacked");
    a.ok(&["unpack", &img, unpacked.to_str().unwrap()]);
    let (mut station, banner, _) = common::station::start(&a, &["--listen", "127.0.0.1:0", "--no-p2p"]);
    let url = banner.split_whitespace().nth(1).expect("the station's URL").to_string();
    let b = ShpHome::new();

    // Reads only: the tree and every file come from A, verified; B's store stays empty.
    let mut m = Mount::start(&b, &root, &["--from", &url, "--no-prefetch"]).expect("a lazy mount");
    let (same, diff) = compare(&unpacked, &m.dir);
    assert!(same, "lazy mount vs shp unpack on A:\n{diff}\n{}", m.log());
    m.stop();
    assert!(m.log().contains("fetched from peers on demand"), "{}", m.log());
    assert_eq!(num(&b.json(&["stats"]), "blocks"), 0, "--no-prefetch stores nothing");

    // The head of a big file fetches the chunks it needs, not the file (400 kB of chunks).
    let d = ShpHome::new();
    let mut m = Mount::start(&d, &root, &["--from", &url, "--no-prefetch"]).expect("a lazy mount");
    let mut head = [0u8; 100];
    std::io::Read::read_exact(&mut std::fs::File::open(m.dir.join("big2")).unwrap(), &mut head).unwrap();
    assert_eq!(&head[..], &big[..100]);
    m.stop();
    let log = m.log();
    let fetched = fetched_bytes(&log);
    assert!(fetched < 300_000, "reading 100 bytes fetched {fetched} bytes: {log}");
    let blocks_first = fetched_blocks(&log);

    // Mounted again, D's kept tree index spares the layers' headers and lists (only the image's
    // top blocks come again), and a read at the end of big2 fetches the chunks that hold it, not
    // the file: the data list says where each chunk starts.
    let mut m = Mount::start(&d, &root, &["--from", &url, "--no-prefetch"]).expect("a lazy mount");
    let mut tail = [0u8; 100];
    let mut f = std::fs::File::open(m.dir.join("big2")).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::End(-100)).unwrap();
    std::io::Read::read_exact(&mut f, &mut tail).unwrap();
    assert_eq!(&tail[..], &big[400_000 - 100..400_000]);
    drop(f);
    m.stop();
    let log = m.log();
    let fetched = fetched_bytes(&log);
    assert!(
        fetched < 300_000,
        "reading the last 100 bytes fetched {fetched} bytes: {log}"
    );
    let blocks_again = fetched_blocks(&log);
    assert!(
        blocks_again + 6 <= blocks_first,
        "the kept index: {blocks_again} blocks fetched, {blocks_first} the first time"
    );

    // With the prefetch, the whole image lands in B, named, while it is mounted.
    let mut m = Mount::start(&b, &root, &["--from", &url, "--tag", "lazy:b"]).expect("a prefetching mount");
    assert_eq!(std::fs::read(m.dir.join("etc/motd")).unwrap(), b"lazy\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !m.log().contains("prefetched") {
        assert!(std::time::Instant::now() < deadline, "no prefetch in 60 s: {}", m.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(m.log().contains("named lazy:b"), "{}", m.log());
    m.stop();
    assert_eq!(b.verify(true)["problems"].as_array().map_or(0, |p| p.len()), 0);
    let copy = b.scratch("copy");
    b.ok(&["unpack", "lazy:b", copy.to_str().unwrap()]);
    let (same, diff) = compare(&unpacked, &copy);
    assert!(same, "the prefetched image unpacks as A's:\n{diff}");

    // The peer goes away under a lazy mount: a file not read yet is an EIO, naming the block.
    let c = ShpHome::new();
    let mut m = Mount::start(&c, &root, &["--from", &url, "--no-prefetch"]).expect("a lazy mount");
    station.terminate();
    let err = std::fs::read(m.dir.join("big2")).expect_err("no peer, no bytes");
    assert_eq!(err.raw_os_error(), Some(5), "EIO: {err}");
    assert!(
        m.log().contains("read of /big2") && m.log().contains(&url),
        "{}",
        m.log()
    );
    m.stop();
    // The peer gone and nothing local: the mount cannot start, naming the root.
    let err = Mount::start(&c, &root, &["--from", &url, "--no-prefetch"])
        .err()
        .expect("no peer, no tree");
    assert!(err.contains(&root), "{err}");
    // Without --from, a root the home lacks is not found.
    let err = Mount::start(&c, &root, &[]).err().expect("not found");
    assert!(err.contains("exit status: 3"), "{err}");
}

#[test]
fn a_lazy_mount_reads_from_a_bitswap_peer() {
    if !fuse_or_skip() {
        return;
    }
    // A serves the image over bitswap only (its libp2p address); B and D start empty.
    let a = ShpHome::new();
    let big = Rng(9).bytes(700_000);
    let img = image_of(
        &a,
        &[
            tar_of(&[
                ("etc/", 'd', b""),
                ("etc/motd", 'f', b"over bitswap\n"),
                ("big", 'f', &big),
            ]),
            tar_of(&[("etc/issue", 'f', b"layer two\n")]),
        ],
        "p2p:t",
    );
    let root = a.json(&["inspect", &img])["root"].as_str().unwrap().to_string();
    let unpacked = a.scratch("unpacked");
    a.ok(&["unpack", &img, unpacked.to_str().unwrap()]);
    let (_station, _, _) = common::station::start(&a, &["--listen", "127.0.0.1:0"]);
    let addr = a.json(&["addrs"])["addrs"][0]
        .as_str()
        .expect("a p2p address")
        .to_string();

    let b = ShpHome::new();
    let mut m = Mount::start(&b, &root, &["--from", &addr, "--no-prefetch"]).expect("a lazy mount over bitswap");
    let (same, diff) = compare(&unpacked, &m.dir);
    assert!(same, "lazy mount over bitswap vs shp unpack on A:\n{diff}\n{}", m.log());
    m.stop();
    assert!(m.log().contains("fetched from peers on demand"), "{}", m.log());
    assert_eq!(num(&b.json(&["stats"]), "blocks"), 0, "--no-prefetch stores nothing");

    // With the prefetch, the image lands in D over bitswap, named, verified.
    let d = ShpHome::new();
    let mut m = Mount::start(&d, &root, &["--from", &addr, "--tag", "lazy:p2p"]).expect("a prefetching mount");
    assert_eq!(std::fs::read(m.dir.join("etc/motd")).unwrap(), b"over bitswap\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !m.log().contains("prefetched") {
        assert!(std::time::Instant::now() < deadline, "no prefetch in 60 s: {}", m.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(m.log().contains("named lazy:p2p"), "{}", m.log());
    m.stop();
    assert_eq!(d.verify(true)["problems"].as_array().map_or(0, |p| p.len()), 0);
    let copy = d.scratch("copy");
    d.ok(&["unpack", "lazy:p2p", copy.to_str().unwrap()]);
    let (same, diff) = compare(&unpacked, &copy);
    assert!(same, "the image fetched over bitswap unpacks as A's:\n{diff}");

    // An address nobody listens on: refused, naming it.
    let dead = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWLVzXQZ1MTA7Qo7DR227htjoC2fmJkF6ieFS2amEUUsZQ";
    let err = Mount::start(&b, &root, &["--from", dead]).err().expect("nobody there");
    assert!(err.contains("127.0.0.1/tcp/1"), "{err}");
}
