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

/// `shp inspect`: what an image holds, with the UnixFS view of its root file system and of each
/// layer (built now if they were not: only directory and file nodes are written).
pub fn inspect(home: &Home, image: &str, json: bool) -> Result<()> {
    let i = home.inspect(image)?;
    let views = match shp_rootfs::view::image_views(home, image) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("shp: note: no UnixFS views of {image}: {e}");
            Vec::new()
        }
    };
    let rootfs_of = |m: &str| views.iter().find(|v| v.digest == m).and_then(|v| v.rootfs);
    let view_of = |l: &str| {
        views
            .iter()
            .flat_map(|v| v.layers.iter())
            .find(|(d, _)| d == l)
            .and_then(|(_, c)| *c)
    };
    if json {
        let mut v = serde_json::to_value(&i)?;
        let cid = |c: Option<shp_core::Cid>| c.map_or(serde_json::Value::Null, |c| c.to_string().into());
        let mark_layers = |ls: &mut serde_json::Value| {
            for l in ls.as_array_mut().into_iter().flatten() {
                let d = l["digest"].as_str().unwrap_or("").to_string();
                l["view"] = cid(view_of(&d));
            }
        };
        for m in v["manifests"].as_array_mut().into_iter().flatten() {
            let d = m["digest"].as_str().unwrap_or("").to_string();
            m["rootfs_view"] = cid(rootfs_of(&d));
            mark_layers(&mut m["layers"]);
        }
        mark_layers(&mut v["layers"]);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("root       {}", i.root);
    println!(
        "names      {}",
        if i.names.is_empty() {
            "-".into()
        } else {
            i.names.join(", ")
        }
    );
    println!("digest     {}", i.digest);
    println!("media type {}", i.media_type);
    println!("size       {}", i.size);
    println!("source     {}", i.source);
    for m in &i.manifests {
        println!("manifest   {} {}", m.digest, m.platform.as_deref().unwrap_or(""));
        if let Some(c) = rootfs_of(&m.digest) {
            println!("  rootfs   /ipfs/{c}");
        }
        if let Some(c) = &m.config {
            println!("  config   {} {:>12}", c.digest, c.size);
        }
        for l in &m.layers {
            println!(
                "  layer    {} {:>12} {:<14} {}",
                l.digest, l.size, l.storage, l.media_type
            );
            if let Some(c) = view_of(&l.digest) {
                println!("    view   /ipfs/{c}");
            }
        }
    }
    Ok(())
}
