//! Publishing files atomically: write a temporary file beside the target, fsync it, rename it into
//! place. A reader sees the old file or the whole new one; a failed write leaves nothing behind.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Creates `path` (and its directory) from what `fill` writes, atomically. `fill` fails → no file.
pub fn publish<T>(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<T>) -> Result<T> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io_path(dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.shp-tmp{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let res = (|| {
        let f = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io_path(&tmp, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let out = fill(&mut w)?;
        let f = w.into_inner().map_err(|e| Error::Io(e.into_error()))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io_path(path, e))?;
        Ok(out)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/out.bin");
        publish(&p, |w| Ok(w.write_all(b"one")?)).unwrap();
        let e = publish(&p, |w| {
            w.write_all(b"two")?;
            Err::<(), _>(Error::Store("fail".into()))
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(dir.path().join("sub")).unwrap().count(), 1);
    }
}
