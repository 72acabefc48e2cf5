//! `shp unpack` against `umoci unpack`: the same tree, path by path (type, mode, owner, size,
//! mtime to the nanosecond, link target, device numbers, xattrs, sha256, hard links), for the
//! fixture images and for layers built here to hold every case the OCI spec names; and `shp mount`
//! of each image against `shp unpack`'s tree (so against umoci's too). Needs root
//! (owners and device nodes; umoci as root) and umoci; SHP_REQUIRE_ROOT=1 makes a skip a failure.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn root_or_skip() -> bool {
    let root = unsafe_free_euid() == 0;
    if !root {
        assert!(
            std::env::var("SHP_REQUIRE_ROOT").as_deref() != Ok("1"),
            "these tests need root (owners, device nodes)"
        );
        eprintln!("skipping: not root");
    }
    root
}

/// The effective uid, from /proc (no unsafe code in tests either).
fn unsafe_free_euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// `umoci unpack` of `layout:tag` into `bundle`; returns its rootfs.
fn umoci(layout: &Path, tag: &str, bundle: &Path) -> std::path::PathBuf {
    let out = run_tool(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{tag}", layout.display()))
            .arg(bundle),
    );
    assert!(out.status.success(), "umoci unpack: {}", stderr(&out));
    bundle.join("rootfs")
}

fn assert_same_tree(a: &Path, b: &Path) {
    let out = run_tool(
        Command::new("python3")
            .arg(repo_root().join("tests/rootfs/compare-trees.py"))
            .arg(a)
            .arg(b),
    );
    assert!(
        out.status.success(),
        "umoci's tree vs shp's:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// `shp mount IMAGE` shows the tree `shp unpack` wrote to `ours`, path for path; the mount ends
/// cleanly with `shp umount`.
fn assert_mount_matches(h: &ShpHome, image: &str, ours: &Path) {
    let mut m = Mount::start(h, image, &[]).unwrap_or_else(|e| panic!("shp mount {image}: {e}"));
    let out = run_tool(
        Command::new("python3")
            .arg(repo_root().join("tests/rootfs/compare-trees.py"))
            .arg(ours)
            .arg(&m.dir),
    );
    assert!(
        out.status.success(),
        "shp unpack's tree vs shp mount's:\n{}{}\n{}",
        stdout(&out),
        stderr(&out),
        m.log()
    );
    let st = m.stop().expect("a running mount");
    assert!(st.success(), "shp mount exits 0 once unmounted: {st}\n{}", m.log());
    assert!(!is_mounted(&m.dir), "{} unmounted", m.dir.display());
}

/// The UnixFS view of `image`'s root file system (from `shp inspect --json`), exported as a CAR
/// and walked by js-ipfs-unixfs's exporter, shows the tree `shp unpack` wrote to `ours`: every
/// directory, file (sha256) and symlink with its mode and mtime. Returns the walk's entries.
fn assert_view_matches(h: &ShpHome, image: &str, ours: &Path) -> Vec<serde_json::Value> {
    let i = h.json(&["inspect", image]);
    let view = i["manifests"][0]["rootfs_view"]
        .as_str()
        .expect("a rootfs view")
        .to_string();
    let car = h.scratch(&format!("view-{}.car", image.replace([':', '/'], "-")));
    h.ok(&["car", "export", &view, car.to_str().unwrap()]);
    let walk = unixfs_walk(&car, &[&view]);
    let lines = h.scratch(&format!("view-{}.jsonl", image.replace([':', '/'], "-")));
    std::fs::write(&lines, walk.iter().map(|v| format!("{v}\n")).collect::<String>()).unwrap();
    let out = run_tool(
        Command::new("python3")
            .arg(repo_root().join("tests/rootfs/compare-view.py"))
            .arg(ours)
            .arg(&lines),
    );
    assert!(
        out.status.success(),
        "shp unpack's tree vs the UnixFS view of {image}:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    walk
}

#[test]
fn fixture_images_unpack_as_umoci_does() {
    if !root_or_skip() {
        return;
    }
    let src = oci_fixture();
    let h = ShpHome::new();
    let tags: Vec<String> = src.index()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(!tags.is_empty());
    // Debian's umoci reads no zstd layers: such an image is compared with umoci's tree of an image
    // with the same diff_ids (the same tree, gzip'd).
    let mut umoci_trees: Vec<(Vec<String>, std::path::PathBuf)> = Vec::new();
    let mut later = Vec::new();
    for tag in &tags {
        h.push(&oci_ref(&src.dir, tag), &["--tag", &format!("fx:{tag}")]);
        let ours = h.scratch(&format!("shp-{tag}"));
        let rep = h.json(&["unpack", &format!("fx:{tag}"), ours.to_str().unwrap()]);
        assert!(num(&rep, "files") > 0, "{rep}");
        assert_eq!(num(&rep, "skipped_total"), 0, "{rep}");
        assert_mount_matches(&h, &format!("fx:{tag}"), &ours);
        assert_view_matches(&h, &format!("fx:{tag}"), &ours);
        let zstd = src.manifest(tag)["layers"].to_string().contains("+zstd");
        if zstd {
            later.push((src.diff_ids(tag), ours, tag.clone()));
            continue;
        }
        let theirs = umoci(&src.dir, tag, &h.scratch(&format!("umoci-{tag}")));
        assert_same_tree(&theirs, &ours);
        umoci_trees.push((src.diff_ids(tag), theirs));
    }
    for (ids, ours, tag) in later {
        let (_, theirs) = umoci_trees
            .iter()
            .find(|(i, _)| *i == ids)
            .unwrap_or_else(|| panic!("{tag}: no image with its diff_ids that umoci reads"));
        assert_same_tree(theirs, &ours);
    }
}

/// One tar entry to build.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    /// path, mode, uid, gid, PAX records, bytes
    FileWith(&'a str, u32, u64, u64, &'a [(&'a str, &'a [u8])], &'a [u8]),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Dev(&'a str, tar::EntryType, u32, u32),
    Raw(&'a [u8], tar::EntryType, &'a [u8]),
}

fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let head = |path: &[u8], kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.as_mut_bytes()[..path.len()].copy_from_slice(path);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    for e in entries {
        match e {
            E::Dir(p, m) => {
                let mut h = head(p.as_bytes(), tar::EntryType::Directory, *m, 0);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::File(p, m, d) => {
                let mut h = head(p.as_bytes(), tar::EntryType::Regular, *m, d.len() as u64);
                h.set_cksum();
                b.append(&h, *d).unwrap();
            }
            E::FileWith(p, m, uid, gid, pax, d) => {
                b.append_pax_extensions(pax.iter().map(|(k, v)| (*k, *v))).unwrap();
                let mut h = head(p.as_bytes(), tar::EntryType::Regular, *m, d.len() as u64);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_cksum();
                b.append(&h, *d).unwrap();
            }
            E::Sym(p, t) | E::Hard(p, t) => {
                let kind = if matches!(e, E::Sym(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = head(p.as_bytes(), kind, 0o777, 0);
                h.set_link_name(t).unwrap();
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::Dev(p, kind, maj, min) => {
                let mut h = head(p.as_bytes(), *kind, 0o666, 0);
                h.set_device_major(*maj).unwrap();
                h.set_device_minor(*min).unwrap();
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::Raw(p, kind, d) => {
                let mut h = head(p, *kind, 0o644, d.len() as u64);
                h.set_cksum();
                b.append(&h, *d).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn image_of(h: &ShpHome, layers: &[Vec<u8>]) -> Layout {
    layout_of_tars(h, "layout", layers)
}

#[test]
fn layers_apply_as_the_image_spec_says() {
    if !root_or_skip() {
        return;
    }
    let cap: &[u8] = &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let l1 = layer(&[
        E::Dir("./", 0o755),
        E::Dir("etc/", 0o755),
        E::File("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n"),
        E::Dir("usr/", 0o755),
        E::Dir("usr/lib/", 0o755),
        E::Sym("lib", "usr/lib"),
        E::Dir("bin/", 0o755),
        E::FileWith("bin/su", 0o4755, 0, 0, &[("mtime", b"1700000000.123456789")], b"#!su\n"),
        E::Hard("bin/su2", "bin/su"),
        E::FileWith(
            "bin/ping",
            0o755,
            0,
            0,
            &[
                ("SCHILY.xattr.security.capability", cap),
                ("SCHILY.xattr.user.note", b"hi"),
            ],
            b"ping",
        ),
        E::Dir("home/", 0o755),
        E::FileWith(
            "home/u.txt",
            0o600,
            1000,
            1000,
            &[("uid", b"4000000"), ("gid", b"1000")],
            b"mine",
        ),
        E::Dir("dev/", 0o755),
        E::Dev("dev/null", tar::EntryType::Char, 1, 3),
        E::Dev("dev/loop0", tar::EntryType::Block, 7, 0),
        E::Dev("dev/fifo", tar::EntryType::Fifo, 0, 0),
        E::Dir("a/", 0o755),
        E::Dir("a/b/", 0o700),
        E::File("a/b/f", 0o644, b"f"),
        E::File("a/keep", 0o644, b"lower"),
        E::Dir("c/", 0o755),
        E::File("c/inside", 0o644, b"x"),
        E::Dir("ro/", 0o555),
        E::File("ro/file", 0o444, b"read only dir, written all the same"),
    ]);
    let l2 = layer(&[
        // Through the symlink: lands in usr/lib.
        E::File("lib/x.so", 0o755, b"\x7fELF"),
        // Opaque: a/ keeps only what this layer puts there (before or after the marker).
        E::File("a/new", 0o644, b"upper"),
        E::Raw(b"a/.wh..wh..opq", tar::EntryType::Regular, b""),
        E::File("a/later", 0o644, b"after the marker"),
        E::Raw(b"etc/.wh.passwd", tar::EntryType::Regular, b""),
        E::Raw(b".wh.missing", tar::EntryType::Regular, b""),
        // A file replaces a directory; an absolute name is the root's.
        E::File("c", 0o644, b"now a file"),
        E::File("/abs.txt", 0o644, b"absolute"),
        // A hard link to a lower layer's file.
        E::Hard("bin/su3", "bin/su"),
    ]);
    let h = ShpHome::new();
    let src = image_of(&h, &[l1, l2]);
    h.push(&oci_ref(&src.dir, "t"), &["--tag", "spec:t"]);
    let ours = h.scratch("shp");
    let rep = h.json(&["unpack", "spec:t", ours.to_str().unwrap()]);
    let theirs = umoci(&src.dir, "t", &h.scratch("umoci"));
    assert_same_tree(&theirs, &ours);
    assert_mount_matches(&h, "spec:t", &ours);
    let walk = assert_view_matches(&h, "spec:t", &ours);
    let entry = |p: &str| {
        walk.iter()
            .find(|e| e["path"] == p)
            .unwrap_or_else(|| panic!("{p} in the view"))
    };
    assert_eq!(entry("bin/su")["cid"], entry("bin/su3")["cid"], "hard links: one node");
    assert_eq!(
        entry("bin/su")["mtime"],
        serde_json::json!([1_700_000_000, 123_456_789])
    );
    assert_eq!(entry("bin/su")["mode"], 0o4755);
    assert!(!walk.iter().any(|e| e["path"] == "dev/null" || e["path"] == "dev/fifo"));
    // The upper layer's own view keeps its whiteouts as the layer's tar has them.
    let i = h.json(&["inspect", "spec:t"]);
    let upper = i["layers"][1]["view"].as_str().expect("a layer view").to_string();
    let car = h.scratch("upper.car");
    h.ok(&["car", "export", &upper, car.to_str().unwrap()]);
    let names: Vec<String> = unixfs_walk(&car, &[&upper])
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    // Names as the tar has them (lib/ is a directory here), and no hard link to a lower file.
    for p in [
        "etc/.wh.passwd",
        ".wh.missing",
        "a/.wh..wh..opq",
        "a/new",
        "a/later",
        "lib/x.so",
        "abs.txt",
    ] {
        assert!(names.iter().any(|n| n == p), "{p} in the upper layer's view: {names:?}");
    }
    assert!(!names.iter().any(|n| n == "etc/passwd" || n == "bin/su3"), "{names:?}");
    // What the comparison covers, asserted on our tree alone as well.
    assert_eq!(std::fs::read(ours.join("usr/lib/x.so")).unwrap(), b"\x7fELF");
    let mut a: Vec<_> = std::fs::read_dir(ours.join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    a.sort();
    assert_eq!(a, ["later", "new"]);
    assert!(!ours.join("etc/passwd").exists());
    assert_eq!(std::fs::read(ours.join("c")).unwrap(), b"now a file");
    assert_eq!(std::fs::read(ours.join("abs.txt")).unwrap(), b"absolute");
    use std::os::unix::fs::MetadataExt;
    let su = std::fs::metadata(ours.join("bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755);
    assert_eq!((su.nlink(), su.mtime_nsec()), (3, 123_456_789));
    assert_eq!(std::fs::metadata(ours.join("home/u.txt")).unwrap().uid(), 4_000_000);
    assert_eq!(num(&rep, "devices"), 2, "{rep}");
    assert_eq!(num(&rep, "fifos"), 1, "{rep}");
    assert_eq!(num(&rep, "hardlinks"), 2, "{rep}");
    // Two from the opaque dir (b, keep) and one for passwd; the missing one removes nothing.
    assert_eq!(num(&rep, "whiteouts"), 3, "{rep}");
}

#[test]
fn bad_layers_are_refused_and_nothing_escapes() {
    let h = ShpHome::new();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dotdot", layer(&[E::File("a/../../evil", 0o644, b"x")]), "climbs out"),
        (
            "later-link",
            layer(&[E::Hard("first", "second"), E::File("second", 0o644, b"x")]),
            "not in the tree",
        ),
        (
            "loop",
            layer(&[E::Sym("l1", "l2"), E::Sym("l2", "l1"), E::File("l1/x", 0o644, b"x")]),
            "symlinks",
        ),
        ("dotdot-link", layer(&[E::Hard("x", "../../etc/passwd")]), "climbs out"),
    ];
    for (name, tar, want) in cases {
        let src = Layout::create(h.scratch(&format!("layout-{name}")));
        let cfg = config_for(&[&tar]);
        src.write_image("t", &cfg, &[("application/vnd.oci.image.layer.v1.tar", &tar)], |_| {});
        h.push(&oci_ref(&src.dir, "t"), &["--tag", &format!("bad:{name}")]);
        let box_dir = h.scratch(&format!("box-{name}"));
        let dest = box_dir.join("rootfs");
        std::fs::create_dir_all(&box_dir).unwrap();
        let (code, err) = h.fails(&["unpack", &format!("bad:{name}"), dest.to_str().unwrap()]);
        assert_eq!(code, 1, "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(err.contains("layer sha256:"), "the error names the layer: {err}");
        // Nothing beside the destination.
        let beside: Vec<_> = std::fs::read_dir(&box_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(beside, ["rootfs"], "{name}");
    }
    // A directory that is not empty, and an image that is not there.
    let src = oci_fixture();
    let tag = src.index()["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap()
        .to_string();
    h.push(&oci_ref(&src.dir, &tag), &["--tag", "ok:1"]);
    let full = h.scratch("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    let (code, err) = h.fails(&["unpack", "ok:1", full.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("not empty"), "{err}");
    let (code, err) = h.fails(&["unpack", "nothing:here", h.scratch("n").to_str().unwrap()]);
    assert_eq!(code, 3, "{err}");
}

/// One random layer operation: (kind, a, b, c), turned into entries by [`random_layer`].
type Op = (u8, u8, u8, u8);

/// Entries for random ops. Names keep their kind (d* directories, f* files, s* symlinks, h* hard
/// links) so no path is ever both, and every entry's parents come first in the same layer (as in
/// real tars: a parent made implicitly would get "now" as its mtime, in either tool).
fn random_layer(ops: &[Op], n: usize) -> Vec<u8> {
    let dir = |a: u8, b: u8| -> String {
        match b % 3 {
            0 => format!("d{}", a % 3),
            _ => format!("d{}/d{}", a % 3, b % 2),
        }
    };
    // Opaque directories get their marker right after the directory's own entry, before anything
    // under it, as docker and buildkit write them.
    let opaque: std::collections::BTreeSet<String> =
        ops.iter().filter(|o| o.0 % 7 == 6).map(|o| dir(o.1, o.2)).collect();
    let mut lines: Vec<(String, u8, String, u32, Vec<u8>)> = Vec::new(); // name, kind, target, mode, data
    let mut parents_done = std::collections::BTreeSet::new();
    let mut files_here: Vec<String> = Vec::new();
    let mut push_parents = |p: &str, lines: &mut Vec<(String, u8, String, u32, Vec<u8>)>| {
        let parts: Vec<&str> = p.split('/').collect();
        for i in 1..parts.len() {
            let d = parts[..i].join("/");
            if parents_done.insert(d.clone()) {
                lines.push((format!("{d}/"), b'5', String::new(), 0o755, Vec::new()));
                if opaque.contains(&d) {
                    lines.push((format!("{d}/.wh..wh..opq"), b'0', String::new(), 0o644, Vec::new()));
                }
            }
        }
    };
    for (i, &(k, a, b, c)) in ops.iter().enumerate() {
        let d = dir(a, b);
        let mode = [0o644, 0o600, 0o755, 0o4755][c as usize % 4];
        match k % 7 {
            0 => {
                let p = format!("{d}/");
                push_parents(&format!("{d}/x"), &mut lines);
                lines.push((
                    p,
                    b'5',
                    String::new(),
                    [0o755, 0o700, 0o555][c as usize % 3],
                    Vec::new(),
                ));
            }
            1 | 2 => {
                let p = format!("{d}/f{}", c % 3);
                push_parents(&p, &mut lines);
                lines.push((
                    p.clone(),
                    b'0',
                    String::new(),
                    mode,
                    format!("{n}.{i}.{p}").into_bytes(),
                ));
                files_here.push(p);
            }
            3 => {
                let p = format!("{d}/s{}", c % 2);
                push_parents(&p, &mut lines);
                let target = match b % 3 {
                    0 => format!("f{}", a % 3),
                    1 => format!("/{}", dir(b, a)),
                    _ => "../nowhere".to_string(),
                };
                lines.push((p, b'2', target, 0o777, Vec::new()));
            }
            4 => {
                if let Some(t) = files_here.get(a as usize % files_here.len().max(1)).cloned() {
                    let p = format!("{d}/h{}", c % 2);
                    push_parents(&p, &mut lines);
                    lines.push((p, b'1', t, 0o644, Vec::new()));
                }
            }
            5 => {
                // A whiteout of a file, symlink or directory from below.
                let victim = match c % 3 {
                    0 => format!("f{}", a % 3),
                    1 => format!("s{}", a % 2),
                    _ => format!("d{}", a % 2),
                };
                let p = format!("{d}/.wh.{victim}");
                push_parents(&p, &mut lines);
                lines.push((p, b'0', String::new(), 0o644, Vec::new()));
                files_here.retain(|f| !f.starts_with(&format!("{d}/{victim}")));
            }
            // The marker itself comes with the directory's entry (above).
            _ => push_parents(&format!("{d}/x"), &mut lines),
        }
    }
    // Real layers never hold a whiteout and an entry for the same path (umoci then leaves a
    // directory with the time of the run as its mtime): drop such whiteouts.
    let written: Vec<String> = lines
        .iter()
        .filter(|l| !l.0.contains(".wh."))
        .map(|l| l.0.trim_end_matches('/').to_string())
        .collect();
    lines.retain(|l| match l.0.rsplit_once("/.wh.") {
        Some((d, v)) if v != ".wh..opq" => {
            let t = format!("{d}/{v}");
            !written.iter().any(|w| *w == t || w.starts_with(&format!("{t}/")))
        }
        _ => true,
    });
    let mut b = tar::Builder::new(Vec::new());
    for (i, (name, kind, target, mode, data)) in lines.iter().enumerate() {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_entry_type(tar::EntryType::new(*kind));
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000 + (n * 1000 + i) as u64);
        if !target.is_empty() {
            h.set_link_name(target).unwrap();
        }
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    #[test]
    fn random_layers_unpack_as_umoci_does(
        layers in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<Op>(), 1..14), 1..4)
    ) {
        if !root_or_skip() {
            return Ok(());
        }
        let tars: Vec<Vec<u8>> = layers.iter().enumerate().map(|(n, ops)| random_layer(ops, n)).collect();
        let h = ShpHome::new();
        let src = image_of(&h, &tars);
        h.push(&oci_ref(&src.dir, "t"), &["--tag", "rand:t"]);
        let ours = h.scratch("shp");
        let out = h.run(&["unpack", "rand:t", ours.to_str().unwrap()]);
        let bundle = h.scratch("umoci");
        let theirs = run_tool(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:t", src.dir.display())).arg(&bundle));
        // Both succeed (and make the same tree) or both refuse.
        proptest::prop_assert_eq!(out.status.success(), theirs.status.success(), "shp: {} umoci: {}", stderr(&out), stderr(&theirs));
        if out.status.success() {
            assert_same_tree(&bundle.join("rootfs"), &ours);
            assert_mount_matches(&h, "rand:t", &ours);
            assert_view_matches(&h, "rand:t", &ours);
        } else {
            // A layer unpack refuses cannot be mounted either.
            let m = Mount::start(&h, "rand:t", &[]);
            proptest::prop_assert!(m.is_err(), "shp mount took what shp unpack refused: {}", stderr(&out));
        }
    }
}
