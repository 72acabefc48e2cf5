//! The network commands: `peers`, `addrs`, `connect`, `disconnect`, `net-key`, and fetching with
//! no `--from` (through the running station, else a short-lived node of our own).

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::{json, Value};
use shp_core::Home;
use shp_station::control::{self, ControlError};
use shp_station::p2p::{self, NetKey};
use shp_station::transport::FetchReport;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Subcommand)]
pub enum NetKeyCmd {
    /// Print a new private-network key in Kubo's swarm.key format (or write it to FILE, mode 0600)
    Generate {
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// `shp init --net KEY` / `--net-key-file FILE`: the home's `swarm.key`.
pub fn init_net_key(home: &Path, key: Option<&str>, file: Option<&Path>) -> Result<()> {
    let k = match (key, file) {
        (Some(k), _) => NetKey::parse(k.as_bytes(), "--net")?,
        (None, Some(f)) => {
            let b = std::fs::read(f).with_context(|| format!("read {}", f.display()))?;
            NetKey::parse(&b, &f.display().to_string())?
        }
        (None, None) => return Ok(()),
    };
    let path = home.join(p2p::netkey::KEY_FILE);
    if path.exists() {
        let old = NetKey::read_file(&path)?;
        if old == k {
            return Ok(());
        }
        anyhow::bail!(
            "{} holds a different network key; remove it first to change networks",
            path.display()
        );
    }
    k.write_file(&path)?;
    eprintln!(
        "private network key {} (fingerprint {})",
        path.display(),
        k.fingerprint()
    );
    Ok(())
}

pub fn net_key(cmd: NetKeyCmd) -> Result<()> {
    match cmd {
        NetKeyCmd::Generate { out } => {
            let k = NetKey::generate()?;
            match out {
                Some(f) => {
                    k.write_file(&f)?;
                    eprintln!("wrote {} (fingerprint {})", f.display(), k.fingerprint());
                }
                None => print!("{}", k.to_file_text()),
            }
        }
    }
    Ok(())
}

fn ask(home: &Path, req: Value) -> Result<Value> {
    Ok(control::request(home, &req)?)
}

pub fn peers(home: &Path, json_out: bool) -> Result<()> {
    let v = ask(home, json!({"op": "peers"}))?;
    if json_out {
        println!("{v}");
        return Ok(());
    }
    for p in v.as_array().into_iter().flatten() {
        let lat = p["latency_ms"]
            .as_f64()
            .map_or("-".to_string(), |l| format!("{l:.1}ms"));
        println!(
            "{}\t{}\t{}\tin {}\tout {}",
            p["peer_id"].as_str().unwrap_or(""),
            p["addr"].as_str().unwrap_or(""),
            lat,
            p["bytes_in"],
            p["bytes_out"]
        );
    }
    Ok(())
}

pub fn addrs(home: &Path, json_out: bool) -> Result<()> {
    let v = ask(home, json!({"op": "addrs"}))?;
    if json_out {
        println!("{v}");
    } else {
        for a in v["addrs"].as_array().into_iter().flatten() {
            println!("{}", a.as_str().unwrap_or(""));
        }
    }
    Ok(())
}

pub fn connect(home: &Path, addr: &str) -> Result<()> {
    p2p::parse_addr(addr)?;
    let v = ask(home, json!({"op": "connect", "addr": addr})).with_context(|| format!("connect {addr}"))?;
    println!("{}", v["peer_id"].as_str().unwrap_or(""));
    Ok(())
}

pub fn disconnect(home: &Path, peer: &str) -> Result<()> {
    ask(home, json!({"op": "disconnect", "peer": peer})).with_context(|| format!("disconnect {peer}"))?;
    Ok(())
}

/// Fetches `cid`: through the running station when there is one (its connected peers and `from`),
/// else from `from` alone when given, else through a short-lived node of our own.
pub fn fetch(dir: &Path, home: Home, cid: &str, from: &[String], tag: Option<&str>) -> Result<FetchReport> {
    let root: shp_core::Cid = cid.parse().map_err(|e| shp_core::Error::InvalidReference {
        reference: cid.to_string(),
        reason: format!("not a CID: {e}"),
    })?;
    let req = json!({"op": "fetch", "cid": cid, "tag": tag, "from": from});
    let rep: FetchReport = match control::request(dir, &req) {
        Ok(v) => serde_json::from_value(v).context("the station's fetch report")?,
        Err(ControlError::NotRunning { .. }) if !from.is_empty() => {
            p2p::fetch::fetch_blocking(&home, &root, tag, from, &[])?
        }
        Err(ControlError::NotRunning { .. }) => {
            let cfg = shp_station::server::Config::load(dir, &Default::default())?;
            let p2p = cfg
                .p2p
                .ok_or_else(|| anyhow::anyhow!("p2p is off in {} and no --from URL was given", dir.display()))?;
            p2p::fetch::fetch_standalone(
                std::sync::Arc::new(home),
                &p2p,
                &root,
                tag,
                from,
                Duration::from_secs(5),
            )?
        }
        Err(e) => return Err(e.into()),
    };
    for p in &rep.problems {
        eprintln!("shp: note: {p}");
    }
    Ok(rep)
}
