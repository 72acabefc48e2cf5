//! Import an OCI layout into a home and write it back out, bit-exact.
//!
//! cargo run -p shp-core --example push_pull -- oci:./layout:latest ./home oci:./out:latest

use shp_core::image::Progress;
use shp_core::reference::ImageRef;
use shp_core::Home;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, src, home, dest] = &args[..] else {
        return Err("usage: push_pull SOURCE HOME DEST (e.g. oci:./layout:latest ./home oci:./out:latest)".into());
    };
    // Shared (an Arc): readers of recipe layers share one rebuild and the home's cache of it.
    let home = std::sync::Arc::new(Home::init(Path::new(home))?);
    let quiet = |_: Progress| {};
    let report = home.push(&src.parse::<ImageRef>()?, None, &quiet)?;
    for b in &report.import.blobs {
        println!("{} {:>12} {}", b.digest, b.size, b.storage);
    }
    println!("root {}", report.import.root);
    // Pull by root CID; every blob's sha256 is checked before it is written.
    home.pull(&report.import.root.to_string(), &dest.parse::<ImageRef>()?, &quiet)?;
    println!("wrote {dest}");
    Ok(())
}
