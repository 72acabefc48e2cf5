//! `shp mirror-config`: the snippet that makes a container runtime ask this station first.

use anyhow::{bail, Context, Result};
use shp_station::mirror::{Upstream, Url};
use shp_station::server::{Config, Overrides};
use std::path::Path;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Runtime {
    /// containerd's hosts.toml (one per upstream, under config_path)
    Containerd,
    /// registries.conf (podman, skopeo, buildah: containers/image)
    Podman,
    /// docker's daemon.json (Docker Hub only)
    Docker,
}

/// `host[:port]` of a URL.
fn authority(u: &Url) -> String {
    match u.port() {
        Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
        None => u.host_str().unwrap_or_default().to_string(),
    }
}

pub fn print_config(home: &Path, runtime: Runtime, station: Option<&str>) -> Result<()> {
    let cfg = Config::load(home, &Overrides::default())?;
    let ups: Vec<Upstream> = match &cfg.mirror {
        Some(m) => m.upstreams.clone(),
        None => bail!(
            "{} configures no upstreams: add \"mirrors\": [\"HOST=URL\", …] to it (what `shp start --mirror` takes)",
            home.join("station.json").display()
        ),
    };
    let station = match station {
        Some(s) => Url::parse(s).with_context(|| format!("--station {s:?}"))?,
        None => {
            let mut a = cfg.listen;
            if a.ip().is_unspecified() {
                a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            Url::parse(&format!("http://{a}")).expect("a socket address is a valid URL host")
        }
    };
    let base = station.as_str().trim_end_matches('/').to_string();
    let plain = station.scheme() == "http";
    match runtime {
        Runtime::Containerd => {
            println!("# containerd: in config.toml, [plugins.\"io.containerd.grpc.v1.cri\".registry] config_path = \"/etc/containerd/certs.d\"");
            println!("# (or `ctr images pull --hosts-dir /etc/containerd/certs.d …`). One file per upstream:");
            for u in &ups {
                println!();
                println!("# /etc/containerd/certs.d/{}/hosts.toml", u.host);
                println!("server = \"{}\"", u.url.as_str().trim_end_matches('/'));
                println!();
                println!("[host.\"{base}\"]");
                println!("  capabilities = [\"pull\", \"resolve\"]");
            }
        }
        Runtime::Podman => {
            println!("# registries.conf (/etc/containers/registries.conf or a drop-in under registries.conf.d/)");
            for u in &ups {
                println!();
                println!("[[registry]]");
                println!("prefix = \"{}\"", u.host);
                println!("location = \"{}\"", authority(&u.url));
                if u.url.scheme() == "http" {
                    println!("insecure = true");
                }
                println!();
                println!("[[registry.mirror]]");
                println!("location = \"{}/{}\"", authority(&station), u.host);
                if plain {
                    println!("insecure = true");
                }
            }
        }
        Runtime::Docker => {
            let Some(i) = ups.iter().position(|u| u.host == shp_station::remote::DOCKER_HUB) else {
                bail!("docker mirrors Docker Hub only, and this station has no docker.io upstream");
            };
            if i != 0 {
                eprintln!(
                    "shp: note: docker names no upstream in its requests, which this station sends to its first upstream ({}): list docker.io first",
                    ups[0].host
                );
            }
            let mut v = serde_json::json!({ "registry-mirrors": [base] });
            if plain {
                v["insecure-registries"] = serde_json::json!([authority(&station)]);
            }
            println!("# /etc/docker/daemon.json (merge into what is there), then restart dockerd");
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}
