//! `shp unpack`: an image's root file system written to a directory.

use anyhow::Result;
use shp_core::Home;
use std::path::Path;

pub fn unpack(home: &Home, image: &str, dir: &Path, platform: Option<String>, json: bool) -> Result<()> {
    let opts = shp_rootfs::UnpackOptions { platform, owners: None };
    let rep = shp_rootfs::unpack(home, image, dir, &opts).map_err(|e| match e {
        // Core errors keep their exit codes (3: no such image, 2: a bad reference).
        shp_rootfs::Error::Core(c) => anyhow::Error::from(c),
        e => anyhow::Error::from(e),
    })?;
    for s in &rep.skipped {
        eprintln!("shp: note: skipped {s}");
    }
    if rep.skipped_total > rep.skipped.len() as u64 {
        eprintln!("shp: note: … {} skipped in all", rep.skipped_total);
    }
    if json {
        println!("{}", serde_json::to_string(&rep)?);
    } else {
        eprintln!(
            "{} layers, {} entries: {} files ({} bytes), {} directories, {} symlinks, {} hard links, {} devices, {} fifos; {} removed by whiteouts",
            rep.layers, rep.entries, rep.files, rep.bytes, rep.dirs, rep.symlinks, rep.hardlinks, rep.devices, rep.fifos, rep.whiteouts
        );
        println!("{}", dir.display());
    }
    Ok(())
}
