//! Shared machinery of the CLI harness: the busybox fixtures (built once per test process with
//! tests/interop/make-images.sh), a temporary shp home driven through the real `shp` binary, and
//! OCI image layout helpers (read, write, walk, compare).

#![allow(dead_code)]

pub mod s3;
pub mod station;
pub mod upstream;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use tempfile::TempDir;

pub const SHP: &str = env!("CARGO_BIN_EXE_shp");
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The tags make-images.sh writes into FIXTURES/oci.
pub const OCI_TAGS: [&str; 5] = [
    "busybox-gzip",
    "busybox-2layer",
    "busybox-none",
    "busybox-zstd",
    "busybox-gzip-python",
];

/// The workspace root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn need_tool(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "required tool `{tool}` not found on PATH: install it with scripts/ci-deps.sh"
    );
}

/// Every external tool the harness uses; panics naming the first one missing.
fn check_tools() {
    for tool in ["umoci", "skopeo", "python3", "jq", "zstd", "sha256sum", "tar", "node"] {
        need_tool(tool);
    }
    let busybox = std::env::var_os("BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/bin/busybox".into());
    assert!(
        busybox.is_file(),
        "required tool busybox-static ({}) not found: install it with scripts/ci-deps.sh",
        busybox.display()
    );
    let car_lib = repo_root().join("tests/interop/node/node_modules/@ipld/car");
    assert!(car_lib.is_dir(), "npm package @ipld/car not found in tests/interop/node/node_modules: run scripts/ci-deps.sh (npm ci in tests/interop/node)");
}

/// Where fixture directories live: inside the target dir, one per test process. Directories left
/// by earlier (finished) processes are removed.
fn fixtures_parent() -> PathBuf {
    let parent = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("shp-cli-fixtures");
    std::fs::create_dir_all(&parent).expect("create fixtures parent");
    if let Ok(rd) = std::fs::read_dir(&parent) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("pid-").and_then(|p| p.parse::<u32>().ok()) {
                if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    parent
}

/// The fixture images, built once per test process: `oci/` (OCI_TAGS), `multi/` (ref `multi`, an
/// image index) and `busybox.docker.tar` (docker-archive of busybox-2layer, written by skopeo).
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        check_tools();
        let dir = fixtures_parent().join(format!("pid-{}", std::process::id()));
        let script = repo_root().join("tests/interop/make-images.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .output()
            .expect("run make-images.sh");
        assert!(
            out.status.success(),
            "{} failed ({}):\n{}\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

pub fn oci_fixture() -> Layout {
    Layout::open(fixtures().join("oci"))
}

pub fn multi_fixture() -> Layout {
    Layout::open(fixtures().join("multi"))
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn digest_of(b: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(b))
}

/// A tiny deterministic PRNG (xorshift64*), for test data and kill delays.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 32) as u8).collect()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs an external tool and panics with its output if it fails.
pub fn run_tool(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    out
}

pub fn skopeo(args: &[&str]) -> Output {
    run_tool(Command::new("skopeo").arg("--insecure-policy").args(args))
}

/// A fresh temporary directory (kept inside the target dir).
pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("shp-cli-test")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir")
}

// ---------------------------------------------------------------------------------------------
// An shp home driven through the binary.

/// What a failed command must leave as it was.
#[derive(Debug, PartialEq, Eq)]
pub struct StoreState {
    pub blocks: u64,
    pub stored_bytes: u64,
    pub ls: Value,
    pub refs_json: Option<Vec<u8>>,
}

pub struct ShpHome {
    _tmp: TempDir,
    pub dir: PathBuf,
    /// Environment every command of this home gets (an S3 home's AWS_* variables).
    pub env: Vec<(String, String)>,
}

impl ShpHome {
    /// A new, initialised home in a temp dir.
    pub fn new() -> ShpHome {
        ShpHome::init_with(&[], Vec::new())
    }

    /// A new home made with `shp init ARGS`, its commands run with `env`.
    pub fn init_with(args: &[&str], env: Vec<(String, String)>) -> ShpHome {
        let tmp = tempdir();
        let dir = tmp.path().join("home");
        let h = ShpHome { _tmp: tmp, dir, env };
        let mut a = vec!["init"];
        a.extend_from_slice(args);
        let out = h.ok(&a);
        assert_eq!(
            out.trim(),
            h.dir.display().to_string(),
            "`shp init` prints the home dir"
        );
        h
    }

    /// A scratch path next to the home (removed with it).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self._tmp.path().join(name)
    }

    pub fn temp_root(&self) -> &Path {
        self._tmp.path()
    }

    /// `shp --home DIR` with no further arguments, for callers that spawn.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(SHP);
        c.env_remove("SHP_HOME")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--home")
            .arg(&self.dir)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run shp")
    }

    /// Runs shp, asserts exit 0, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "shp {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// Runs shp with `--json` appended and parses its (single) stdout document.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let s = self.ok(&a);
        // docs/CLI.md: one JSON document, on one line except for inspect (pretty-printed)
        if args.first() != Some(&"inspect") {
            assert_eq!(
                s.trim_end().lines().count(),
                1,
                "shp {a:?}: --json output is not one line: {s}"
            );
        }
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("shp {a:?}: stdout is not one JSON document ({e}): {s}"))
    }

    /// Runs shp, asserts a non-zero exit (not a signal); returns (code, stderr).
    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        let code = out
            .status
            .code()
            .unwrap_or_else(|| panic!("shp {args:?} died by a signal: {}", out.status));
        let err = stderr(&out);
        assert_ne!(
            code,
            0,
            "shp {args:?} succeeded but should have failed:\nstdout: {}\nstderr: {err}",
            stdout(&out)
        );
        // docs/CLI.md: errors are one line, `shp: error: <what failed>: <why>`
        assert!(
            err.starts_with("shp: error: ") && err.trim_end().lines().count() == 1,
            "shp {args:?}: stderr is not one `shp: error: ` line: {err:?}"
        );
        (code, err)
    }

    /// `shp push -q SOURCE [extra]`, returning the root CID.
    pub fn push(&self, source: &str, extra: &[&str]) -> String {
        let mut a = vec!["push", "-q", source];
        a.extend_from_slice(extra);
        let out = self.ok(&a);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "push -q prints exactly one line, got {out:?}");
        assert_cid(lines[0]);
        lines[0].to_string()
    }

    pub fn pull(&self, image: &str, dest: &str) -> String {
        let out = self.ok(&["pull", image, dest]);
        let root = out.lines().last().unwrap_or_default().to_string();
        assert_cid(&root);
        root
    }

    pub fn stats(&self) -> Value {
        self.json(&["stats"])
    }

    pub fn ls(&self) -> Vec<Value> {
        self.json(&["ls"]).as_array().expect("ls --json is an array").clone()
    }

    /// Names listed by `shp ls --json`.
    pub fn names(&self) -> BTreeSet<String> {
        self.ls()
            .iter()
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            .collect()
    }

    pub fn state(&self) -> StoreState {
        let s = self.stats();
        StoreState {
            blocks: num(&s, "blocks"),
            stored_bytes: num(&s, "stored_bytes"),
            ls: self.json(&["ls"]),
            refs_json: std::fs::read(self.dir.join("refs.json")).ok(),
        }
    }

    /// `shp verify [--rebuild] --json`: exit 0 and no problems.
    pub fn verify(&self, rebuild: bool) -> Value {
        let args: &[&str] = if rebuild { &["verify", "--rebuild"] } else { &["verify"] };
        let v = self.json(args);
        assert_eq!(v["problems"], json!([]), "verify found problems: {v}");
        assert!(num(&v, "blocks_checked") > 0, "verify checked no blocks: {v}");
        if rebuild {
            assert!(num(&v, "blobs_rebuilt") > 0, "verify --rebuild rebuilt no blobs: {v}");
        }
        v
    }
}

pub fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key:?} is not a number in {v}"))
}

/// A CIDv1 in base32 as shp prints it.
pub fn assert_cid(s: &str) {
    assert!(
        s.starts_with("bafy") && s.len() > 50 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "not a CIDv1 base32 root: {s:?}"
    );
}

pub fn oci_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

// ---------------------------------------------------------------------------------------------
// OCI image layouts.

#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn open(dir: impl Into<PathBuf>) -> Layout {
        Layout { dir: dir.into() }
    }

    /// An empty layout (oci-layout + empty index.json).
    pub fn create(dir: impl Into<PathBuf>) -> Layout {
        let l = Layout::open(dir);
        std::fs::create_dir_all(l.dir.join("blobs/sha256")).unwrap();
        std::fs::write(l.dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        l.write_index(&json!({"schemaVersion": 2, "manifests": []}));
        l
    }

    /// A full copy of another layout.
    pub fn copy_of(src: &Layout, dir: impl Into<PathBuf>) -> Layout {
        let l = Layout::create(dir);
        std::fs::copy(src.dir.join("index.json"), l.dir.join("index.json")).unwrap();
        for d in src.blob_files() {
            std::fs::copy(src.blob_path(&d), l.blob_path(&d)).unwrap();
        }
        l
    }

    pub fn index(&self) -> Value {
        let p = self.dir.join("index.json");
        serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .expect("index.json parses")
    }

    pub fn write_index(&self, v: &Value) {
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(v).unwrap()).unwrap();
    }

    /// The descriptor index.json has for `tag`.
    pub fn ref_desc(&self, tag: &str) -> Value {
        let idx = self.index();
        let found: Vec<&Value> = idx["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .filter(|m| m["annotations"][REF_NAME] == tag)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{}: want exactly one index.json entry for ref {tag:?}: {idx}",
            self.dir.display()
        );
        found[0].clone()
    }

    pub fn ref_digest(&self, tag: &str) -> String {
        self.ref_desc(tag)["digest"].as_str().expect("digest").to_string()
    }

    /// Adds (or replaces) the index.json entry for `tag`.
    pub fn set_ref(&self, tag: &str, media_type: &str, digest: &str, size: u64) {
        let mut idx = self.index();
        let list = idx["manifests"].as_array_mut().unwrap();
        list.retain(|m| m["annotations"][REF_NAME] != tag);
        list.push(json!({"mediaType": media_type, "digest": digest, "size": size, "annotations": {REF_NAME: tag}}));
        self.write_index(&idx);
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        self.dir.join("blobs/sha256").join(hex)
    }

    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let p = self.blob_path(digest);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    pub fn json_blob(&self, digest: &str) -> Value {
        serde_json::from_slice(&self.blob(digest)).unwrap_or_else(|e| panic!("blob {digest} is not JSON: {e}"))
    }

    /// Stores bytes as a blob under their true digest; returns the digest.
    pub fn put_blob(&self, bytes: &[u8]) -> String {
        let d = digest_of(bytes);
        std::fs::write(self.blob_path(&d), bytes).unwrap();
        d
    }

    /// Digests of every file in blobs/sha256 (as "sha256:HEX").
    pub fn blob_files(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.dir.join("blobs/sha256"))
            .unwrap_or_else(|e| panic!("{}/blobs/sha256: {e}", self.dir.display()))
            .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
            .collect()
    }

    /// Every blob reachable from a descriptor (index → manifests → config + layers), with its
    /// descriptor size.
    pub fn reachable(&self, desc: &Value) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        let mut stack = vec![desc.clone()];
        while let Some(d) = stack.pop() {
            let digest = d["digest"].as_str().expect("descriptor digest").to_string();
            let size = d["size"].as_u64().expect("descriptor size");
            if out.insert(digest.clone(), size).is_some() {
                continue;
            }
            let mt = d["mediaType"].as_str().unwrap_or("");
            if mt.contains("manifest") || mt.contains("index") {
                let doc = self.json_blob(&digest);
                for key in ["manifests", "layers"] {
                    if let Some(list) = doc[key].as_array() {
                        stack.extend(list.iter().cloned());
                    }
                }
                if doc["config"].is_object() {
                    stack.push(doc["config"].clone());
                }
            }
        }
        out
    }

    /// The image manifest `tag` names (must be a manifest, not an index).
    pub fn manifest(&self, tag: &str) -> Value {
        self.json_blob(&self.ref_digest(tag))
    }

    /// The rootfs.diff_ids of `tag`'s config.
    pub fn diff_ids(&self, tag: &str) -> Vec<String> {
        let m = self.manifest(tag);
        let cfg = self.json_blob(m["config"]["digest"].as_str().unwrap());
        cfg["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect()
    }

    /// Writes an image (config + layers, digests and sizes honest), then lets `tamper` edit the
    /// manifest JSON before it is stored, and tags it. Returns the manifest digest.
    pub fn write_image(
        &self,
        tag: &str,
        config: &[u8],
        layers: &[(&str, &[u8])],
        tamper: impl FnOnce(&mut Value),
    ) -> String {
        let cdigest = self.put_blob(config);
        let layer_descs: Vec<Value> = layers
            .iter()
            .map(|(mt, b)| json!({"mediaType": mt, "digest": self.put_blob(b), "size": b.len()}))
            .collect();
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cdigest, "size": config.len()},
            "layers": layer_descs,
        });
        tamper(&mut manifest);
        let mbytes = serde_json::to_vec(&manifest).unwrap();
        let mdigest = self.put_blob(&mbytes);
        self.set_ref(tag, OCI_MANIFEST, &mdigest, mbytes.len() as u64);
        mdigest
    }
}

/// A minimal image config for the given uncompressed layers.
pub fn config_for(uncompressed_layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = uncompressed_layers.iter().map(|l| digest_of(l)).collect();
    serde_json::to_vec(&json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// Checks that `out:out_ref` is `src:src_ref` bit-exact: the ref's top digest is the same; every
/// blob the source image reaches is in `out`; every file in out/blobs/sha256 is named by its
/// sha256 and is byte-identical to the source's blob of that digest.
pub fn assert_roundtrip(src: &Layout, src_ref: &str, out: &Layout, out_ref: &str) {
    let sdesc = src.ref_desc(src_ref);
    let odesc = out.ref_desc(out_ref);
    assert_eq!(
        odesc["digest"], sdesc["digest"],
        "{out_ref}: top digest differs from the source's {src_ref}"
    );
    assert_eq!(
        odesc["size"], sdesc["size"],
        "{out_ref}: top size differs from the source's"
    );
    assert_eq!(
        odesc["mediaType"], sdesc["mediaType"],
        "{out_ref}: top media type differs from the source's"
    );
    let files = out.blob_files();
    for (digest, size) in src.reachable(&sdesc) {
        assert!(
            files.contains(&digest),
            "{}: blob {digest} of {src_ref} is missing",
            out.dir.display()
        );
        assert_eq!(
            std::fs::metadata(out.blob_path(&digest)).unwrap().len(),
            size,
            "{digest}: size differs"
        );
    }
    for digest in files {
        let bytes = out.blob(&digest);
        assert_eq!(
            digest_of(&bytes),
            digest,
            "{}: blob file name is not its sha256",
            out.dir.display()
        );
        let sp = src.blob_path(&digest);
        assert!(sp.exists(), "{}: blob {digest} is not in the source", out.dir.display());
        assert!(
            std::fs::read(sp).unwrap() == bytes,
            "blob {digest} differs from the source's bytes"
        );
    }
}

/// Every file under `root` (recursively), as relative path → Some(bytes) for regular files,
/// None for anything else (symlinks are not followed).
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let ft = std::fs::symlink_metadata(&p).unwrap().file_type();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if ft.is_dir() {
                walk(root, &p, out);
                out.insert(rel, None);
            } else if ft.is_file() {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            } else {
                out.insert(rel, None);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Extracts a tar file into a new directory with the system tar.
pub fn untar(file: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    run_tool(Command::new("tar").arg("-xf").arg(file).arg("-C").arg(into));
}

/// A binary CID as text: multibase base32 (RFC 4648, lowercase, unpadded) with its "b" prefix.
pub fn cid_string(cid: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::from("b");
    let (mut acc, mut bits) = (0u32, 0);
    for &b in cid {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// A CARv1 file's sections: (offset of the block data, length of the data, CID bytes).
pub fn car_sections(car: &[u8]) -> Vec<(usize, usize, Vec<u8>)> {
    fn varint(b: &[u8], pos: &mut usize) -> usize {
        let (mut v, mut shift) = (0usize, 0);
        loop {
            let x = b[*pos];
            *pos += 1;
            v |= ((x & 0x7f) as usize) << shift;
            if x & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }
    let mut pos = 0;
    let hlen = varint(car, &mut pos);
    pos += hlen;
    let mut out = Vec::new();
    while pos < car.len() {
        let len = varint(car, &mut pos);
        let end = pos + len;
        // CIDv1 sha2-256: version, codec, 0x12, 0x20, 32 digest bytes (single-byte varints)
        assert!(
            car[pos] == 1 && car[pos + 2] == 0x12 && car[pos + 3] == 0x20,
            "unexpected CID prefix at {pos}"
        );
        out.push((pos + 36, len - 36, car[pos..pos + 36].to_vec()));
        pos = end;
    }
    out
}

/// `shp mount IMAGE DIR --json` on a fresh directory of a home, unmounted (`shp umount`) when
/// stopped or dropped. Needs /dev/fuse and root (or fusermount3).
pub struct Mount<'h> {
    pub h: &'h ShpHome,
    pub dir: PathBuf,
    /// The JSON line `shp mount --json` printed.
    pub info: Value,
    child: Option<std::process::Child>,
    log: PathBuf,
}

static MOUNTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl<'h> Mount<'h> {
    /// The mount, or the command's stderr when it failed.
    pub fn start(h: &'h ShpHome, image: &str, extra: &[&str]) -> Result<Mount<'h>, String> {
        use std::io::BufRead;
        let n = MOUNTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = h.scratch(&format!("mnt-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = h.scratch(&format!("mnt-{n}.log"));
        let mut child = h
            .cmd()
            .args(["mount", image])
            .arg(&dir)
            .args(extra)
            .arg("--json")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.is_empty() {
            let st = child.wait().unwrap();
            return Err(format!("{st}: {}", std::fs::read_to_string(&log).unwrap_or_default()));
        }
        let info = serde_json::from_str(&line).unwrap_or_else(|e| panic!("shp mount --json: {e}: {line:?}"));
        Ok(Mount {
            h,
            dir,
            info,
            child: Some(child),
            log,
        })
    }

    /// SIGKILLs the mount process (its mount point stays mounted, dead).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What the mount process logged (read errors, among others).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `shp umount DIR`, then the mount process's exit (bounded).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let out = self.h.run(&["umount", self.dir.to_str().unwrap()]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                assert!(out.status.success(), "shp umount: {}", stderr(&out));
                return Some(st);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("shp mount did not exit after shp umount: {}", stderr(&out));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether `dir` is a mount point now (per /proc/self/mountinfo).
pub fn is_mounted(dir: &Path) -> bool {
    let want = dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// An OCI layout in `h`'s scratch dir `dir` holding one image, tagged `t`, of uncompressed layer
/// tars (lowest first).
pub fn layout_of_tars(h: &ShpHome, dir: &str, layers: &[Vec<u8>]) -> Layout {
    let l = Layout::create(h.scratch(dir));
    let refs: Vec<&[u8]> = layers.iter().map(|v| v.as_slice()).collect();
    let descs: Vec<(&str, &[u8])> = refs
        .iter()
        .map(|b| ("application/vnd.oci.image.layer.v1.tar", *b))
        .collect();
    l.write_image("t", &config_for(&refs), &descs, |_| {});
    l
}

/// Runs tests/interop/helia/unixfs_walk.mjs (js-ipfs-unixfs's exporter) over `car` with `args`;
/// its stdout lines, parsed when they are JSON.
pub fn unixfs_walk(car: &Path, args: &[&str]) -> Vec<Value> {
    let dir = repo_root().join("tests/interop/helia");
    assert!(
        dir.join("node_modules/ipfs-unixfs-exporter").is_dir(),
        "npm package ipfs-unixfs-exporter not found in {}: run scripts/ci-deps.sh",
        dir.display()
    );
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("unixfs_walk.mjs"));
    let (ls, rest) = match args.first() {
        Some(&"--ls") => (true, &args[1..]),
        _ => (false, args),
    };
    if ls {
        cmd.arg("--ls");
    }
    let out = run_tool(cmd.arg(car).args(rest));
    assert!(out.status.success(), "unixfs_walk.mjs {args:?}: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.to_string())))
        .collect()
}
