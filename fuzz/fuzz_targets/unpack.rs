//! Layer tars from outside, applied by `shp unpack`'s applier into a scratch root: whatever the
//! bytes (names with `..`, absolute names, symlinks pointing anywhere, loops, hard links to
//! nowhere, whiteouts, devices), it never panics and never writes outside the root. The input is
//! one or two layers, split at the first `\0NEXT\0`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const SPLIT: &[u8] = b"\0NEXT\0";

fn walk(p: &Path, out: &mut Vec<std::path::PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            out.push(path.clone());
            if is_dir {
                walk(&path, out);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (a, b) = match data.windows(SPLIT.len()).position(|w| w == SPLIT) {
        Some(i) => (&data[..i], Some(&data[i + SPLIT.len()..])),
        None => (data, None),
    };
    let tmp = tempfile::tempdir().expect("scratch dir");
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut rep = shp_rootfs::UnpackReport::default();
    {
        let mut ap = shp_rootfs::Applier::new(&root, false, &mut rep);
        let mut ok = ap.layer("sha256:fuzz-1", a).is_ok();
        if let (true, Some(b)) = (ok, b) {
            ok = ap.layer("sha256:fuzz-2", b).is_ok();
        }
        if ok {
            let _ = ap.finish();
        }
    }
    // Nothing beside the root; everything under it.
    let beside: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(beside, ["root"], "an entry was written outside the root");
    let mut all = Vec::new();
    walk(&root, &mut all);
    for p in &all {
        assert!(p.starts_with(&root), "{} escaped", p.display());
    }
    // Make the tree removable whatever modes the layers set.
    for p in all.iter().rev() {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::symlink_metadata(p).map(|m| m.is_dir()).unwrap_or(false) {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
        }
    }
    let _ = std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o700));
});
