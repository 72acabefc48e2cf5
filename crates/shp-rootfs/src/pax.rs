//! What a tar entry's PAX records say about the file it makes: owner, group, mtime to the
//! nanosecond, xattrs (`SCHILY.xattr.*`). One reading for `unpack` and for `tree` (the mount), so
//! a mounted tree and an unpacked one cannot disagree.

use rustix::fs::Timespec;
use std::io::Read;

/// What PAX records say about an entry.
#[derive(Debug, Default)]
pub(crate) struct Pax {
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    pub mtime: Option<Timespec>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Pax {
    /// The PAX records that apply to `e` (none: all `None`).
    pub fn of<R: Read>(e: &mut tar::Entry<'_, R>) -> std::io::Result<Pax> {
        let mut pax = Pax::default();
        if let Some(exts) = e.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                let (k, v) = (ext.key_bytes(), ext.value_bytes());
                match k {
                    b"uid" => pax.uid = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()),
                    b"gid" => pax.gid = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()),
                    b"mtime" => pax.mtime = parse_time(v),
                    _ => {
                        if let Some(x) = k.strip_prefix(b"SCHILY.xattr.") {
                            pax.xattrs.push((x.to_vec(), v.to_vec()));
                        }
                    }
                }
            }
        }
        Ok(pax)
    }
}

/// A PAX time (`SECS[.FRACTION]`, possibly negative) as a timespec.
pub(crate) fn parse_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let tv_sec: i64 = sec.parse().ok()?;
    let mut ns = String::from(frac);
    ns.truncate(9);
    while ns.len() < 9 {
        ns.push('0');
    }
    let mut tv_nsec: i64 = ns.parse().ok()?;
    // "-1.5" is 1.5 s before the epoch.
    let tv_sec = if tv_sec < 0 && tv_nsec > 0 {
        tv_nsec = 1_000_000_000 - tv_nsec;
        tv_sec - 1
    } else {
        tv_sec
    };
    Some(Timespec {
        tv_sec,
        tv_nsec: tv_nsec as _,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_keep_their_fraction() {
        let t = parse_time(b"1700000000.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 500_000_000));
        let t = parse_time(b"12").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 0));
        let t = parse_time(b"-1.25").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 750_000_000));
        assert!(parse_time(b"x").is_none());
    }
}
