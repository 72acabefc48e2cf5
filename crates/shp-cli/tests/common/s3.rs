//! A real SeaweedFS cluster on 127.0.0.1 (tests/s3/seaweed.sh: a master with replication 001, two
//! volume servers, a filer and the S3 gateway) and shp homes whose store is a bucket in it.

use super::{repo_root, run_tool, stdout, ShpHome};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub struct Cluster {
    pub dir: PathBuf,
    pub vars: BTreeMap<String, String>,
    /// The process-wide cluster is left to its watchdog (it stops when this process exits).
    shared: bool,
}

fn script() -> PathBuf {
    repo_root().join("tests/s3/seaweed.sh")
}

/// Whether the tests may skip when SeaweedFS is not installed (SHP_REQUIRE_S3=1: they may not).
fn weed_missing() -> bool {
    let ok = Command::new("bash")
        .arg("-c")
        .arg(r#"w=$(command -v weed || python3 -c 'import os,sys; print(os.path.join(sys.prefix, "bin", "weed"))'); "$w" version"#)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("SHP_REQUIRE_S3").as_deref() != Ok("1"),
            "SeaweedFS (`weed`) is not installed and SHP_REQUIRE_S3=1: run scripts/ci-deps.sh (pip install -r tests/s3/requirements.txt)"
        );
        eprintln!("skipped: SeaweedFS (`weed`) is not installed (pip install -r tests/s3/requirements.txt)");
    }
    !ok
}

impl Cluster {
    fn launch(shared: bool) -> Cluster {
        let parent = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("seaweed");
        std::fs::create_dir_all(&parent).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("cluster")
            .tempdir_in(&parent)
            .unwrap()
            .keep();
        let out = run_tool(
            Command::new("bash")
                .arg(script())
                .arg("start")
                .arg(&dir)
                .env("SEAWEED_PARENT", std::process::id().to_string())
                .env("SEAWEED_MAX_SECONDS", "1800")
                .env("SEAWEED_RM", "1"),
        );
        let vars = stdout(&out)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Cluster { dir, vars, shared }
    }

    /// A cluster of its own (for tests that kill parts of it), stopped on drop; None (a skip)
    /// when SeaweedFS is not installed.
    pub fn start() -> Option<Cluster> {
        if weed_missing() {
            return None;
        }
        Some(Cluster::launch(false))
    }

    /// One cluster for the whole test process (each test uses buckets of its own).
    pub fn shared() -> Option<&'static Cluster> {
        static C: OnceLock<Option<Cluster>> = OnceLock::new();
        C.get_or_init(|| (!weed_missing()).then(|| Cluster::launch(true)))
            .as_ref()
    }

    pub fn var(&self, k: &str) -> &str {
        self.vars
            .get(k)
            .unwrap_or_else(|| panic!("seaweed.sh wrote no {k}: {:?}", self.vars))
    }

    /// The AWS_* variables an AWS tool would be given for this cluster.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The same settings as `--store-opt KEY=VALUE` arguments.
    pub fn store_opts(&self) -> Vec<String> {
        let mut a = Vec::new();
        for (k, v) in [
            ("endpoint", "AWS_ENDPOINT_URL"),
            ("access_key_id", "AWS_ACCESS_KEY_ID"),
            ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
            ("region", "AWS_REGION"),
        ] {
            a.push("--store-opt".to_string());
            a.push(format!("{k}={}", self.var(v)));
        }
        a.push("--store-opt".to_string());
        a.push("allow_http=true".to_string());
        a
    }

    /// A home on `url`, configured with `--store-opt`s (plus `extra` init arguments).
    pub fn home(&self, url: &str, extra: &[&str]) -> ShpHome {
        let opts = self.store_opts();
        let mut args = vec!["--store", url];
        args.extend(opts.iter().map(String::as_str));
        args.extend_from_slice(extra);
        ShpHome::init_with(&args, Vec::new())
    }

    /// A home on `url` that takes endpoint and credentials from the AWS_* environment.
    pub fn home_from_env(&self, url: &str) -> ShpHome {
        ShpHome::init_with(&["--store", url], self.aws_env())
    }

    pub fn kill_volume(&self, n: u32) {
        run_tool(
            Command::new("bash")
                .arg(script())
                .arg("kill-volume")
                .arg(&self.dir)
                .arg(n.to_string()),
        );
    }

    fn filer(&self, path: &str) -> String {
        format!(
            "http://{}/buckets/{}",
            self.var("SEAWEED_FILER"),
            path.trim_start_matches('/')
        )
    }

    /// Object keys under `bucket/prefix/` (one level), through the filer's own API.
    pub fn list(&self, bucket_dir: &str) -> Vec<String> {
        let out = run_tool(Command::new("curl").args([
            "-fsS",
            "-H",
            "Accept: application/json",
            &format!("{}/?limit=10000", self.filer(bucket_dir)),
        ]));
        let v: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("filer listing: {e}: {}", stdout(&out)));
        v["Entries"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["FullPath"].as_str())
                    .filter_map(|p| p.rsplit('/').next().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An object's bytes, read behind shp's back.
    pub fn get(&self, key: &str) -> Vec<u8> {
        run_tool(Command::new("curl").args(["-fsS", &self.filer(key)])).stdout
    }

    /// Replaces an object's bytes behind shp's back.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        run_tool(
            Command::new("curl")
                .args(["-fsS", "-X", "PUT", "-T"])
                .arg(f.path())
                .arg(self.filer(key)),
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.shared {
            let _ = Command::new("bash").arg(script()).arg("stop").arg(&self.dir).output();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
