//! Layer entry names, made safe to write.
//!
//! [`clean`] turns a tar name into components: a leading `/` and `./` are dropped (layers made by
//! some tools name entries `/usr/bin/x`; the root is the image's), empty and `.` components
//! vanish, and a `..` component is refused — no entry may name a place outside the root.
//!
//! [`resolve_parent`] finds where an entry goes: every component but the last is looked up inside
//! the root, a symlink among them followed with the root as `/` (an absolute target starts again
//! at the root, `..` stops at it), so `/lib -> usr/lib` from one layer takes a later layer's
//! `lib/x.so` to `usr/lib/x.so`, as a runtime would see it. Missing parents are made (mode 0755).
//! The last component is never followed: what an entry replaces is the link itself.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Most symlinks followed while resolving one name (Linux's own limit).
pub const MAX_LINKS: usize = 40;

/// The components of a tar entry name; `Err` names a `..` component.
pub fn clean(name: &[u8]) -> Result<Vec<OsString>, String> {
    let mut out = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("the name climbs out of the root (`..`)".into()),
            c => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(out)
}

/// Where an entry with components `comps` (from [`clean`], not empty) goes under `root`: the host
/// path of its parent directory (made if missing) and its own name.
pub fn resolve_parent(root: &Path, comps: &[OsString]) -> Result<(PathBuf, OsString), String> {
    let (last, parents) = comps.split_last().ok_or("an empty name")?;
    let mut todo: std::collections::VecDeque<OsString> = parents.iter().cloned().collect();
    let mut cur: Vec<OsString> = Vec::new();
    let mut links = 0usize;
    while let Some(c) = todo.pop_front() {
        if c == "." || c.is_empty() {
            continue;
        }
        if c == ".." {
            cur.pop();
            continue;
        }
        let mut host = root.to_path_buf();
        host.extend(&cur);
        host.push(&c);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.is_dir() => cur.push(c),
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(format!("more than {MAX_LINKS} symlinks on the way (a loop?)"));
                }
                let target = std::fs::read_link(&host).map_err(|e| format!("{}: {e}", host.display()))?;
                let t = target.as_os_str().as_bytes();
                if t.first() == Some(&b'/') {
                    cur.clear();
                }
                let parts: Vec<OsString> = t
                    .split(|&b| b == b'/')
                    .filter(|p| !p.is_empty())
                    .map(|p| OsStr::from_bytes(p).to_os_string())
                    .collect();
                for p in parts.into_iter().rev() {
                    todo.push_front(p);
                }
            }
            Ok(_) => {
                let mut shown = PathBuf::from("/");
                shown.extend(&cur);
                shown.push(&c);
                return Err(format!("{} is not a directory", shown.display()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&host).map_err(|e| format!("{}: {e}", host.display()))?;
                std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .map_err(|e| format!("{}: {e}", host.display()))?;
                cur.push(c);
            }
            Err(e) => return Err(format!("{}: {e}", host.display())),
        }
    }
    let mut dir = root.to_path_buf();
    dir.extend(&cur);
    Ok((dir, last.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn names_are_cleaned_and_dotdot_is_refused() {
        assert_eq!(clean(b"./usr//bin/./x").unwrap(), ["usr", "bin", "x"]);
        assert_eq!(clean(b"/etc/passwd").unwrap(), ["etc", "passwd"]);
        assert!(clean(b"./").unwrap().is_empty());
        assert!(clean(b"a/../../etc").is_err());
        assert!(clean(b"..").is_err());
    }

    #[test]
    fn symlinked_parents_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        // An absolute target and a climbing one stay inside the root.
        symlink("/usr", root.join("abs")).unwrap();
        symlink("../../../../usr", root.join("usr/lib/up")).unwrap();
        let r = |p: &[u8]| resolve_parent(&root, &clean(p).unwrap());
        assert_eq!(r(b"lib/x.so").unwrap(), (root.join("usr/lib"), "x.so".into()));
        assert_eq!(r(b"abs/lib/y").unwrap(), (root.join("usr/lib"), "y".into()));
        assert_eq!(r(b"usr/lib/up/lib/z").unwrap(), (root.join("usr/lib"), "z".into()));
        // The last component is not followed.
        assert_eq!(r(b"lib").unwrap(), (root.clone(), "lib".into()));
        // Missing parents are made.
        assert_eq!(r(b"new/dir/f").unwrap(), (root.join("new/dir"), "f".into()));
        assert!(root.join("new/dir").is_dir());
        // A loop and a file on the way are errors.
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert!(r(b"loop1/x").unwrap_err().contains("symlinks"));
        std::fs::write(root.join("file"), b"x").unwrap();
        assert!(r(b"file/x").unwrap_err().contains("not a directory"));
        // Nothing appeared outside the root.
        let mut outside: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        outside.sort();
        assert_eq!(outside, ["root"]);
    }
}
