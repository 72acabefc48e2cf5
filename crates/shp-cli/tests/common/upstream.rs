//! Debian's `docker-registry` as a real upstream registry for the tests.

use super::{run_tool, stdout, tempdir};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A `docker-registry serve` child on 127.0.0.1 (port chosen by the kernel), killed on drop. Its
/// stdout and stderr (access log included) are collected.
pub struct Registry {
    pub child: Child,
    pub host: String,
    pub root: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start(htpasswd: Option<(&str, &str)>) -> Registry {
        assert!(
            Path::new("/usr/bin/docker-registry").is_file(),
            "/usr/bin/docker-registry not found: install it with scripts/ci-deps.sh"
        );
        let dir = tempdir();
        let root = dir.path().join("storage");
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n  secret: shp-test-secret\n",
            root.display()
        );
        if let Some((user, pass)) = htpasswd {
            let out = run_tool(Command::new("htpasswd").args(["-Bbn", user, pass]));
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, stdout(&out).trim()).unwrap();
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: shp-test\n    path: {}\n",
                file.display()
            ));
        }
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let mut child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker-registry");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { return };
                    if let Some(i) = line.find("listening on 127.0.0.1:") {
                        let rest = &line[i + "listening on ".len()..];
                        let addr: String = rest.chars().take_while(|c| *c != '"' && *c != ' ').collect();
                        let _ = tx.send(addr);
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        drop(tx);
        let reg = |host: String| Registry {
            child,
            host,
            root,
            log: log.clone(),
            _dir: dir,
        };
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(host) => reg(host),
            Err(e) => {
                let mut r = reg(String::new());
                let _ = r.child.kill();
                panic!("docker-registry did not start ({e}): {:?}", log.lock().unwrap());
            }
        }
    }

    pub fn url(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.host)
    }

    /// Digests of the blobs the registry served with GET on /v2/REPO/blobs/ (access log).
    pub fn blob_gets(&self, repo: &str) -> Vec<String> {
        let needle = format!("\"GET /v2/{repo}/blobs/");
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let i = l.find(&needle)?;
                let rest = &l[i + needle.len()..];
                Some(rest.split([' ', '"']).next()?.to_string())
            })
            .collect()
    }

    /// The registry's own file for a blob.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.root
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
