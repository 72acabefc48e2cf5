//! The `shp` command line. Argument parsing, progress and output only; the work is shp-core's.
//! The contract (commands, output, JSON fields, exit codes) is docs/CLI.md.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use shp_core::image::Progress;
use shp_core::reference::ImageRef;
use shp_core::store::Compression;
use shp_core::{Error, Home};
use shp_station::remote::{self, Credentials, RemoteOptions, RemoteRef};
use shp_station::transport;
use std::path::PathBuf;
use std::process::ExitCode;

mod mirror;
mod mount;
mod net;
mod rootfs;
mod snapshotter;

#[derive(Parser)]
#[command(
    name = "shp",
    version,
    about = "Container images as deduplicated, bit-exact IPLD DAGs"
)]
struct Cli {
    /// Home directory (default: $SHP_HOME, else ~/.shp)
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the home directory and its store (idempotent)
    Init {
        /// How the store compresses blocks at rest, kept in the home's config: zstd:LEVEL (default zstd:3;
        /// 1..=19, or -7..=-1 for zstd's fast levels), with ",deferred" to write blocks raw on import and
        /// compress them at the next `shp gc` (faster imports; raw bytes on disk until then)
        #[arg(long, value_name = "zstd:LEVEL[,deferred]")]
        compression: Option<String>,
        /// Join a private network: a 64-hex-digit key or a whole swarm.key text (kept in HOME/swarm.key, mode 0600)
        #[arg(long, value_name = "KEY", conflicts_with = "net_key_file")]
        net: Option<String>,
        /// Join the private network of this swarm.key file (Kubo's format)
        #[arg(long, value_name = "FILE")]
        net_key_file: Option<PathBuf>,
        /// Join the public IPFS network: writes "public": true and the public bootstrap peers into
        /// HOME/station.json (QUIC beside TCP; the station announces what it holds on the IPFS DHT)
        #[arg(long, conflicts_with_all = ["net", "net_key_file"])]
        public: bool,
        /// Keep blocks and refs in an S3 bucket instead of HOME/store (created when absent):
        /// s3://BUCKET/PREFIX; endpoint, region and credentials as the AWS tools take them
        /// (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE)
        #[arg(long, value_name = "s3://BUCKET/PREFIX")]
        store: Option<String>,
        /// An option of the S3 store, kept in the home's config (repeatable): endpoint, region,
        /// profile, access_key_id, secret_access_key, session_token, allow_http, virtual_hosted,
        /// pack_size, cache_size, grace
        #[arg(long = "store-opt", value_name = "KEY=VALUE", requires = "store")]
        store_opt: Vec<String>,
    },
    /// Import an image: SOURCE is oci:DIR[:REF], docker-archive:FILE[:NAME:TAG|:@N] or docker://HOST/REPO[:TAG|@DIGEST]
    Push {
        source: String,
        /// Name the image (default: the source's ref or tag; else the root is pinned unnamed)
        #[arg(long, value_name = "NAME:TAG")]
        tag: Option<String>,
        /// Print only the root CID
        #[arg(long, short)]
        quiet: bool,
        /// Largest size one layer may decompress to, in bytes
        #[arg(long, value_name = "BYTES")]
        max_layer_size: Option<u64>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Export an image bit-exact: DEST is oci:DIR[:REF], docker-archive:FILE[:NAME:TAG] or docker://HOST/REPO[:TAG]
    Pull {
        image: String,
        dest: String,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Fetch IMAGE (a root CID) from this station or trustless gateway first (repeatable)
        #[arg(long = "from", value_name = "URL")]
        from: Vec<String>,
        /// Print the fetch report (or {"root": CID} when nothing was fetched) as one JSON document
        #[arg(long)]
        json: bool,
    },
    /// Fetch the DAG under a CID from stations or trustless gateways into the store
    Fetch {
        cid: String,
        /// A station's or gateway's base URL, http://HOST:PORT (repeatable: the work is shared); without
        /// it, the running station's peers (or a short-lived node's bootstrap and mDNS peers)
        #[arg(long = "from", value_name = "URL")]
        from: Vec<String>,
        /// Name the fetched image (default: its root is pinned unnamed)
        #[arg(long, value_name = "NAME:TAG")]
        tag: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Serve this home as an IPFS trustless gateway only (`/ipfs/`, `/shp/v1/blocks`) until interrupted
    Gateway {
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
        listen: std::net::SocketAddr,
    },
    /// List named and pinned images
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show an image's manifests and how each layer is stored
    Inspect {
        image: String,
        #[arg(long)]
        json: bool,
    },
    /// Store size and content
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// What each image costs given the ones before it (layer, file and chunk level)
    Dedup {
        #[arg(required = true)]
        images: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check every block against its CID, every ref's DAG for completeness, and every image's layers
    /// against its config's rootfs.diff_ids
    Verify {
        /// Also rebuild every blob and check its sha256
        #[arg(long)]
        rebuild: bool,
        #[arg(long)]
        json: bool,
    },
    /// Compress the blocks a deferred store wrote raw (runs while the home is in use; gc does it too)
    Compact {
        #[arg(long)]
        json: bool,
    },
    /// Remove blocks no ref reaches
    Gc {
        #[arg(long)]
        json: bool,
    },
    /// Remove a name, pin or blob ref (blocks go at the next gc)
    Rm { name: String },
    /// CAR v1 export and import
    Car {
        #[command(subcommand)]
        cmd: CarCmd,
    },
    /// Run the station (OCI registry on /v2/) in the foreground until SIGINT/SIGTERM
    Start {
        /// Address to listen on (default: station.json's, else 127.0.0.1:5000; port 0 picks a free one)
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<String>,
        /// Push authentication: off, htpasswd:FILE (bcrypt entries) or token:SECRET
        #[arg(long, value_name = "SPEC")]
        auth: Option<String>,
        /// Require the credentials for pulls too
        #[arg(long)]
        auth_reads: bool,
        /// Allow a non-loopback address with auth off
        #[arg(long)]
        insecure_public: bool,
        /// Log level: error, warn, info, debug, trace, or a RUST_LOG-style filter (default: $RUST_LOG, else info)
        #[arg(long, value_name = "LEVEL")]
        log_level: Option<String>,
        /// libp2p listen address (repeatable; default station.json's, else /ip4/0.0.0.0/tcp/4001; tcp/0 picks a free port)
        #[arg(long, value_name = "MULTIADDR")]
        p2p_listen: Vec<String>,
        /// A peer to connect to at start and keep connected (repeatable; replaces station.json's list)
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<String>,
        /// No mDNS (LAN discovery)
        #[arg(long)]
        no_mdns: bool,
        /// No DHT: announce nothing, look up no providers (fetch from connected peers only)
        #[arg(long)]
        no_dht: bool,
        /// No libp2p host at all (registry and gateway only)
        #[arg(long)]
        no_p2p: bool,
        /// Pull through to an upstream registry: HOST=URL, e.g. docker.io=https://registry-1.docker.io (repeatable; replaces station.json's list)
        #[arg(long, value_name = "HOST=URL")]
        mirror: Vec<String>,
        /// Seconds a tag resolved against an upstream is served without asking again (default 300)
        #[arg(long, value_name = "SECS")]
        mirror_tag_ttl: Option<u64>,
        /// Another station the mirror asks for content before the upstream, http://HOST:PORT (repeatable; replaces station.json's list)
        #[arg(long, value_name = "URL")]
        mirror_peer: Vec<String>,
        /// Seconds an image pulled through the mirror stays named after its last pull (default 604800, a week; 0: for ever)
        #[arg(long, value_name = "SECS")]
        mirror_keep: Option<u64>,
        /// Credentials for the upstreams: a containers auth.json or docker config.json (by upstream HOST)
        #[arg(long, value_name = "FILE")]
        mirror_authfile: Option<std::path::PathBuf>,
    },
    /// Write an image's root file system (its layers applied, whiteouts and all) into DIR, absent or empty
    Unpack {
        image: String,
        dir: PathBuf,
        /// For an image index: the platform's manifest (default: this machine's, else the first)
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Serve an image's root file system (or one layer's tree) read-only on DIR through FUSE, until SIGTERM or `shp umount DIR`
    Mount {
        image: String,
        dir: PathBuf,
        /// One layer only, as overlayfs wants a lower directory: its index (0 is the base layer) or digest
        #[arg(long, value_name = "N|DIGEST")]
        layer: Option<String>,
        /// A station or trustless gateway (URL), or a bitswap peer (MULTIADDR ending in /p2p/ID), to read what the home lacks from, as it is needed (repeatable; IMAGE may then be a root CID the home lacks)
        #[arg(long, value_name = "URL|MULTIADDR")]
        from: Vec<String>,
        /// With --from: the name the prefetched image gets in the home (default: pinned)
        #[arg(long, value_name = "NAME")]
        tag: Option<String>,
        /// With --from: read only what is touched; do not fetch the whole image in the background
        #[arg(long)]
        no_prefetch: bool,
        /// For an image index: the platform's manifest (default: this machine's, else the first)
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Serve containerd's snapshots API on a unix socket (a proxy plugin): layers the home holds are mounted from the store, never downloaded or unpacked
    Snapshotter {
        /// The socket containerd's [proxy_plugins] entry names
        #[arg(long, value_name = "SOCK")]
        address: PathBuf,
        /// Where snapshots and their state live (default: HOME/snapshotter)
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// A station to read images the home lacks from, lazily (repeatable): it names the image's root, its blocks are read as they are touched and the whole image is fetched into the home meanwhile
        #[arg(long, value_name = "URL")]
        from: Vec<String>,
        /// With --from: read only what containers touch; do not fetch whole images in the background
        #[arg(long)]
        no_prefetch: bool,
        /// Log filter (RUST_LOG syntax; default info)
        #[arg(long, value_name = "FILTER")]
        log_level: Option<String>,
    },
    /// The home's running mounts
    Mounts {
        #[arg(long)]
        json: bool,
    },
    /// Unmount a mount `shp mount` made
    Umount { dir: PathBuf },
    /// Print the configuration that makes a container runtime use this station as its mirror
    MirrorConfig {
        /// containerd (hosts.toml), podman (registries.conf, also skopeo and buildah) or docker (daemon.json)
        #[arg(value_enum)]
        runtime: mirror::Runtime,
        /// The station's URL as the runtime reaches it (default: http:// and station.json's listen address)
        #[arg(long, value_name = "URL")]
        station: Option<String>,
    },
    /// Connected libp2p peers of the running station
    Peers {
        #[arg(long)]
        json: bool,
    },
    /// The running station's libp2p addresses
    Addrs {
        #[arg(long)]
        json: bool,
    },
    /// Connect the running station to a peer (/ip4/…/tcp/…/p2p/ID)
    Connect { addr: String },
    /// Disconnect the running station from a peer
    Disconnect { peer: String },
    /// Private-network keys
    NetKey {
        #[command(subcommand)]
        cmd: net::NetKeyCmd,
    },
}

/// How to reach a docker:// registry (ignored for other transports).
#[derive(Args)]
struct RemoteArgs {
    /// Verify the registry's TLS certificate; false also allows plain http
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    tls_verify: bool,
    /// Registry credentials
    #[arg(long, value_name = "USER:PASS", conflicts_with = "authfile")]
    creds: Option<String>,
    /// Auth file (containers auth.json or docker config.json); default $REGISTRY_AUTH_FILE
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Upload blobs larger than this in PATCH chunks of this size
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    chunk_size: u64,
}

impl RemoteArgs {
    fn options(&self) -> Result<RemoteOptions> {
        Ok(RemoteOptions {
            tls_verify: self.tls_verify,
            creds: self.creds.as_deref().map(Credentials::parse).transpose()?,
            authfile: self.authfile.clone().or_else(|| {
                std::env::var_os("REGISTRY_AUTH_FILE")
                    .filter(|f| !f.is_empty())
                    .map(PathBuf::from)
            }),
            chunk_size: self.chunk_size,
            ..RemoteOptions::default()
        })
    }
}

#[derive(Subcommand)]
enum CarCmd {
    /// Write the DAG under an image or CID to FILE
    Export { image: String, file: PathBuf },
    /// Read FILE into the store, verifying every block; its roots are pinned
    Import { file: PathBuf },
}

/// Exit codes (docs/CLI.md): 1 failure, 2 usage, 3 not found, 4 verification found problems.
fn exit_code(e: &anyhow::Error) -> u8 {
    use shp_station::control::ControlError;
    use shp_station::{auth::AuthError, server::StationError};
    if let Some(c) = e.downcast_ref::<ControlError>() {
        return match c {
            ControlError::NotRunning { .. } => 5,
            c if c.is_not_found() => 3,
            c if c.is_usage() => 2,
            _ => 1,
        };
    }
    if let Some(shp_station::p2p::Error::BadAddr(..) | shp_station::p2p::Error::BadPeer(_)) =
        e.downcast_ref::<shp_station::p2p::Error>()
    {
        return 2;
    }
    if let Some(StationError::P2p(shp_station::p2p::Error::BadAddr(..))) = e.downcast_ref::<StationError>() {
        return 2;
    }
    if let Some(shp_station::p2p::fetch::StandaloneError::Fetch(t)) =
        e.downcast_ref::<shp_station::p2p::fetch::StandaloneError>()
    {
        return if t.is_not_found() { 3 } else { 1 };
    }
    if let Some(StationError::Listen(_) | StationError::Auth(AuthError::Spec(_))) = e.downcast_ref::<StationError>() {
        return 2;
    }
    let core = match e.downcast_ref::<remote::Error>() {
        Some(remote::Error::NotFound(_)) => return 3,
        Some(remote::Error::InvalidReference { .. }) => return 2,
        Some(r) => r.core(),
        None => e.downcast_ref::<Error>(),
    };
    if let Some(c) = core {
        return match c {
            Error::ImageNotFound(_) | Error::BlobNotFound(_) | Error::BlockNotFound { .. } => 3,
            Error::InvalidReference { .. } => 2,
            _ => 1,
        };
    }
    match e.downcast_ref::<Error>() {
        Some(Error::ImageNotFound(_)) | Some(Error::BlobNotFound(_)) | Some(Error::BlockNotFound { .. }) => 3,
        Some(Error::InvalidReference { .. }) => 2,
        Some(_) => 1,
        None => match e.downcast_ref::<transport::Error>() {
            Some(t) if t.is_not_found() => 3,
            Some(transport::Error::BadUrl { .. }) => 2,
            Some(transport::Error::Core(Error::InvalidReference { .. })) => 2,
            _ => 1,
        },
    }
}

/// `--store URL` with its `--store-opt KEY=VALUE` pairs.
fn store_spec(url: String, opts: &[String]) -> Result<shp_core::config::StoreSpec> {
    let mut options = std::collections::BTreeMap::new();
    for o in opts {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--store-opt {o:?}: expected KEY=VALUE"))?;
        options.insert(k.to_string(), v.to_string());
    }
    Ok(shp_core::config::StoreSpec { url, options })
}

fn progress_bar(quiet: bool) -> (ProgressBar, impl Fn(Progress)) {
    let pb = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap()
            .progress_chars("=> "),
    );
    let p = pb.clone();
    let f = move |ev: Progress| match ev {
        Progress::Planned { bytes, .. } => p.set_length(bytes),
        Progress::Blob { digest, .. } => p.set_message(digest.chars().take(19).collect::<String>()),
        Progress::Bytes(n) => p.inc(n),
    };
    (pb, f)
}

fn run(cli: Cli) -> Result<u8> {
    let dir = cli.home.clone().unwrap_or_else(Home::default_dir);
    let open = || Home::open(&dir).map_err(anyhow::Error::from);
    match cli.cmd {
        Cmd::Init {
            compression,
            net,
            net_key_file,
            public,
            store,
            store_opt,
        } => {
            let compression = compression.as_deref().map(Compression::parse).transpose()?;
            let store = store.map(|url| store_spec(url, &store_opt)).transpose()?;
            let h = Home::init_on(&dir, compression, store)?;
            if compression.is_some() {
                eprintln!("store compression {}", h.compression());
            }
            net::init_net_key(h.dir(), net.as_deref(), net_key_file.as_deref())?;
            if public && shp_station::server::join_public(h.dir())? {
                eprintln!(
                    "on the public IPFS network: bootstrap peers in {}",
                    h.dir().join("station.json").display()
                );
            }
            let (peer, made) = shp_station::server::init_identity(h.dir())?;
            if made {
                eprintln!("station id {peer}");
            }
            println!("{}", h.dir().display());
        }
        Cmd::Push {
            source,
            tag,
            quiet,
            max_layer_size,
            json,
            remote,
        } => {
            let remote_src = source.starts_with("docker://");
            let src = if remote_src {
                Err(RemoteRef::parse(&source)?)
            } else {
                Ok(source.parse::<ImageRef>()?)
            };
            let mut home = open()?;
            if let Some(m) = max_layer_size {
                home.options.max_layer_bytes = m;
            }
            let (pb, f) = progress_bar(quiet || json);
            let mut fetched = None;
            let rep = match &src {
                Ok(src) => home.push(src, tag.as_deref(), &f).map_err(anyhow::Error::from),
                Err(r) => remote::import(&home, r, tag.as_deref(), &remote.options()?, &f)
                    .map(|i| {
                        fetched = Some((i.fetched_blobs, i.fetched_bytes));
                        i.push
                    })
                    .map_err(anyhow::Error::from),
            };
            pb.finish_and_clear();
            let rep = rep.with_context(|| format!("push {source}"))?;
            let imp = &rep.import;
            if json {
                let blobs: Vec<_> = imp.blobs.iter().map(|b| json!({"digest": b.digest, "size": b.size, "media_type": b.media_type, "storage": b.storage.to_string(), "new_bytes": b.new_bytes})).collect();
                let mut doc = json!({"root": imp.root.to_string(), "name": rep.name, "digest": imp.top_digest, "blobs": blobs, "blocks": imp.stats.blocks, "new_blocks": imp.stats.new_blocks, "bytes": imp.stats.bytes, "new_bytes": imp.stats.new_bytes});
                if let Some((n, bytes)) = fetched {
                    doc["fetched_blobs"] = json!(n);
                    doc["fetched_bytes"] = json!(bytes);
                }
                doc["warnings"] = json!(rep.warnings);
                println!("{doc}");
            } else {
                for w in &rep.warnings {
                    eprintln!("shp: warning: {w}");
                }
                if !quiet {
                    for b in &imp.blobs {
                        println!(
                            "{} {:>12} {:<14} new {}",
                            b.digest,
                            b.size,
                            b.storage.to_string(),
                            b.new_bytes
                        );
                    }
                    if let Some((n, bytes)) = fetched {
                        println!("fetched {n} blobs, {bytes} bytes");
                    }
                    println!("name {}", rep.name.as_deref().unwrap_or("(pinned, unnamed)"));
                    println!(
                        "added {} of {} bytes in {} new blocks",
                        imp.stats.new_bytes, imp.stats.bytes, imp.stats.new_blocks
                    );
                }
                println!("{}", imp.root);
            }
        }
        Cmd::Pull {
            image,
            dest,
            remote,
            from,
            json,
        } => {
            if dest.starts_with("docker://") {
                let d = RemoteRef::parse(&dest)?;
                let home = std::sync::Arc::new(open()?);
                let (pb, f) = progress_bar(false);
                let res = remote::export(&home, &image, &d, &remote.options()?, &f);
                pb.finish_and_clear();
                let rep = res.with_context(|| format!("pull {image} {dest}"))?;
                for b in &rep.blobs {
                    println!("{} {:>12} {}", b.digest, b.size, b.sent);
                }
                println!("{}", rep.root);
                return Ok(0);
            }
            let d: ImageRef = dest.parse()?;
            let home = std::sync::Arc::new(open()?);
            // A CID the store lacks is fetched first: from --from, else the network.
            let missing = match image.parse::<shp_core::Cid>() {
                Ok(c) => !home.store().has(&c)?,
                Err(_) => false,
            };
            let mut report = None;
            if !from.is_empty() || missing {
                let rep = net::fetch(&dir, open()?, &image, &from, None).with_context(|| format!("fetch {image}"))?;
                eprintln!(
                    "fetched {} blocks ({} bytes on the wire) from {} peers",
                    rep.blocks_fetched,
                    rep.bytes_fetched,
                    rep.peers.len()
                );
                report = Some(rep);
            }
            let (pb, f) = progress_bar(json);
            let res = home.pull(&image, &d, &f);
            pb.finish_and_clear();
            let root = res.with_context(|| format!("pull {image} {dest}"))?;
            match (json, report) {
                (true, Some(r)) => println!("{}", serde_json::to_string(&r)?),
                (true, None) => println!("{}", json!({"root": root.to_string()})),
                (false, _) => println!("{root}"),
            }
        }
        Cmd::Fetch { cid, from, tag, json } => {
            let rep = net::fetch(&dir, open()?, &cid, &from, tag.as_deref()).with_context(|| format!("fetch {cid}"))?;
            if json {
                println!("{}", serde_json::to_string(&rep)?);
            } else {
                for p in &rep.peers {
                    println!(
                        "peer {} blocks {} bytes {}{}",
                        p.peer,
                        p.blocks,
                        p.bytes,
                        if p.dropped { " dropped" } else { "" }
                    );
                }
                println!(
                    "fetched {} blocks ({} bytes on the wire, {} block bytes), {} already present",
                    rep.blocks_fetched, rep.bytes_fetched, rep.block_bytes, rep.blocks_present
                );
                println!("name {}", rep.name.as_deref().unwrap_or("(pinned, unnamed)"));
                println!("{}", rep.root);
            }
        }
        Cmd::Gateway { listen } => {
            let home = std::sync::Arc::new(open()?);
            let gw = shp_station::gateway::RunningGateway::start(home, listen)
                .with_context(|| format!("listen on {listen}"))?;
            println!("{}", gw.url());
            gw.wait()?;
        }
        Cmd::Ls { json } => {
            let list = open()?.list()?;
            if json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                for e in list {
                    println!(
                        "{}\t{}\t{}\t{}",
                        e.name.as_deref().unwrap_or("-"),
                        e.root,
                        e.digest,
                        e.size
                    );
                }
            }
        }
        Cmd::Inspect { image, json } => rootfs::inspect(&open()?, &image, json)?,
        Cmd::Stats { json } => {
            let s = open()?.stats()?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!("blocks        {}", s.blocks);
                println!("stored_bytes  {}", s.stored_bytes);
                println!("logical_bytes {}", s.logical_bytes);
                println!("images        {}", s.images);
                println!("blobs         {}", s.blobs);
                println!("compression   {}", s.compression);
                println!("store         {}", s.store);
                if let Some(b) = &s.bucket {
                    println!("objects       {} ({} bytes)", b.objects, b.object_bytes);
                    let r = &b.requests;
                    println!(
                        "requests      {} GET, {} PUT, {} LIST, {} HEAD, {} DELETE ({} retried); {} bytes in, {} out",
                        r.get, r.put, r.list, r.head, r.delete, r.retries, r.bytes_in, r.bytes_out
                    );
                }
                if s.loose_bytes > 0 {
                    println!("loose_bytes   {} (compressed by the next gc)", s.loose_bytes);
                }
                if s.stored_bytes > 0 {
                    println!("ratio         {:.3}", s.logical_bytes as f64 / s.stored_bytes as f64);
                }
            }
        }
        Cmd::Dedup { images, json } => {
            let rows = open()?.dedup(&images)?;
            if json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                println!(
                    "{:<32} {:>14} {:>14} {:>14} {:>14}",
                    "image", "total", "layer", "file", "chunk"
                );
                let mut t = [0u64; 4];
                for r in &rows {
                    println!(
                        "{:<32} {:>14} {:>14} {:>14} {:>14}",
                        r.image, r.total_bytes, r.layer_bytes, r.file_bytes, r.chunk_bytes
                    );
                    for (a, b) in t
                        .iter_mut()
                        .zip([r.total_bytes, r.layer_bytes, r.file_bytes, r.chunk_bytes])
                    {
                        *a += b;
                    }
                }
                println!("{:<32} {:>14} {:>14} {:>14} {:>14}", "total", t[0], t[1], t[2], t[3]);
            }
        }
        Cmd::Verify { rebuild, json } => {
            let r = open()?.verify(rebuild)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                for p in &r.problems {
                    println!("problem {p}");
                }
                println!(
                    "checked {} blocks, {} refs, {} layer diff_ids ({} opaque layers not checked), {} blobs rebuilt: {}",
                    r.blocks_checked,
                    r.roots_checked,
                    r.diff_ids_checked,
                    r.diff_ids_skipped,
                    r.blobs_rebuilt,
                    if r.problems.is_empty() { "ok" } else { "PROBLEMS" }
                );
            }
            if !r.problems.is_empty() {
                return Ok(4);
            }
        }
        Cmd::Compact { json } => {
            let r = open()?.compact()?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "compacted {} loose packs ({} blocks): {} -> {} bytes",
                    r.packs_compacted, r.blocks, r.bytes_before, r.bytes_after
                );
            }
        }
        Cmd::Gc { json } => {
            let r = Home::open_exclusive(&dir)?.gc()?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "removed {} blocks, freed {} bytes, {} live blocks",
                    r.blocks_removed, r.bytes_freed, r.live_blocks
                );
            }
        }
        Cmd::Rm { name } => {
            if !open()?.remove(&name)? {
                return Err(Error::ImageNotFound(format!("{name:?} (no such name, pin or blob ref)")).into());
            }
        }
        Cmd::Car {
            cmd: CarCmd::Export { image, file },
        } => {
            let n = open()?.car_export(&image, &file)?;
            eprintln!("wrote {n} blocks to {}", file.display());
        }
        Cmd::Car {
            cmd: CarCmd::Import { file },
        } => {
            let (roots, n) = open()?.car_import(&file)?;
            eprintln!("imported {n} blocks");
            for r in roots {
                println!("{r}");
            }
        }
        Cmd::Start {
            listen,
            auth,
            auth_reads,
            insecure_public,
            log_level,
            p2p_listen,
            bootstrap,
            no_mdns,
            no_dht,
            no_p2p,
            mirror,
            mirror_tag_ttl,
            mirror_peer,
            mirror_keep,
            mirror_authfile,
        } => {
            use shp_station::server::{init_logging, Config, Overrides, Station};
            use std::io::Write;
            init_logging(log_level.as_deref());
            let o = Overrides {
                listen,
                auth,
                auth_reads,
                insecure_public,
                p2p_listen,
                bootstrap,
                no_mdns,
                no_dht,
                no_p2p,
                mirrors: mirror,
                mirror_tag_ttl,
                mirror_peers: mirror_peer,
                mirror_keep,
                mirror_authfile,
            };
            open()?; // a clear error for a missing home before anything else
            let cfg = Config::load(&dir, &o)?;
            let station = Station::bind(&dir, &cfg)?;
            station.run_until_signal(|s| {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", s.banner())?;
                out.flush()
            })?;
        }
        Cmd::Unpack {
            image,
            dir: out,
            platform,
            json,
        } => rootfs::unpack(&open()?, &image, &out, platform, json)?,
        Cmd::Mount {
            image,
            dir: mp,
            layer,
            from,
            tag,
            no_prefetch,
            platform,
            json,
        } => mount::mount(
            open()?,
            &dir,
            &image,
            &mp,
            shp_rootfs::mount::MountOptions { platform, layer },
            mount::Lazy { from, tag, no_prefetch },
            json,
        )?,
        Cmd::Snapshotter {
            address,
            root,
            from,
            no_prefetch,
            log_level,
        } => {
            shp_station::server::init_logging(log_level.as_deref());
            let root = root.unwrap_or_else(|| dir.join("snapshotter"));
            snapshotter::run(open()?, &root, &address, &from, !no_prefetch)?
        }
        Cmd::Mounts { json } => mount::list(&dir, json)?,
        Cmd::Umount { dir: mp } => mount::umount(&dir, &mp)?,
        Cmd::MirrorConfig { runtime, station } => mirror::print_config(&dir, runtime, station.as_deref())?,
        Cmd::Peers { json } => net::peers(&dir, json)?,
        Cmd::Addrs { json } => net::addrs(&dir, json)?,
        Cmd::Connect { addr } => net::connect(&dir, &addr)?,
        Cmd::Disconnect { peer } => net::disconnect(&dir, &peer)?,
        Cmd::NetKey { cmd } => net::net_key(cmd)?,
    }
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("shp: error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}
