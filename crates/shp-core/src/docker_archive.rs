//! docker-archive (`docker save`) files: read one image out of the tarball, write one back.
//!
//! "Bit-exact" here means every member file identical (the outer tar framing is not part of any
//! digest). An archive imported by shp is written back member for member, in the same order, from
//! the archive record in the image root:
//! `"archive": {"tags": [text], "members": [["blob", name, digest(32)] | ["file", name, size,
//! [links]] | ["dir", name] | ["symlink", name, target] | ["hardlink", name, target]]}`.
//! The image itself gets a synthesized docker schema2 manifest (the archive has none), which is
//! deterministic, so pushing the same archive twice gives the same root CID.

use crate::blob::{BlobNode, ImportOptions};
use crate::cbor::Value;
use crate::cid::{format_digest, parse_digest};
use crate::dag::{DagReader, DagWriter};
use crate::error::{Error, Result};
use crate::image::{import_image, BlobSource, ImageRoot, ImportReport, Progress};
use crate::oci::{self, Descriptor};
use crate::reference::ArchiveRef;
use crate::store::{Batch, Blockstore};
use crate::tar::{check_checksum, parse_numeric};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A member of the outer tar.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub typeflag: u8,
    pub linkname: String,
    pub offset: u64,
    pub size: u64,
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Lists the members of a tar file (names from ustar prefix, GNU long names or PAX `path`).
pub fn list_members(path: &Path) -> Result<Vec<Member>> {
    let f = File::open(path).map_err(|e| Error::io_path(path, e))?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(Error::InvalidReference {
            reference: format!("docker-archive:{}", path.display()),
            reason: "not a regular file (archives are read by seeking; save a pipe to a file first)".into(),
        });
    }
    let len = meta.len();
    let what = path.display().to_string();
    let bad = |offset: u64, reason: String| Error::Tar {
        blob: what.clone(),
        offset,
        reason,
    };
    let mut out = Vec::new();
    let mut off = 0u64;
    let mut long_name: Option<String> = None;
    let mut long_link: Option<String> = None;
    let mut h = [0u8; 512];
    while off + 512 <= len {
        f.read_exact_at(&mut h, off)?;
        if h.iter().all(|&b| b == 0) {
            break;
        }
        check_checksum(&h).map_err(|_| bad(off, "header checksum mismatch".into()))?;
        let size = parse_numeric(&h[124..136]).ok_or_else(|| bad(off, "invalid size field".into()))?;
        let data = off + 512;
        let next = data + size.div_ceil(512) * 512;
        if data + size > len {
            return Err(bad(off, "member runs past the end of the file".into()));
        }
        let typeflag = h[156];
        let read_data = |n: u64| -> Result<Vec<u8>> {
            if n > crate::tar::MAX_SPECIAL {
                return Err(bad(off, "extension header too large".into()));
            }
            let mut v = vec![0u8; n as usize];
            f.read_exact_at(&mut v, data)?;
            Ok(v)
        };
        match typeflag {
            b'L' => long_name = Some(cstr(&read_data(size)?)),
            b'K' => long_link = Some(cstr(&read_data(size)?)),
            b'x' => {
                let d = read_data(size)?;
                for rec in d.split(|&c| c == b'\n') {
                    let s = String::from_utf8_lossy(rec);
                    if let Some((_, kv)) = s.split_once(' ') {
                        if let Some(p) = kv.strip_prefix("path=") {
                            long_name = Some(p.to_string());
                        } else if let Some(p) = kv.strip_prefix("linkpath=") {
                            long_link = Some(p.to_string());
                        }
                    }
                }
            }
            b'g' => {}
            _ => {
                let name = long_name.take().unwrap_or_else(|| {
                    let (n, p) = (cstr(&h[..100]), cstr(&h[345..500]));
                    if &h[257..262] == b"ustar" && !p.is_empty() {
                        format!("{p}/{n}")
                    } else {
                        n
                    }
                });
                let linkname = long_link.take().unwrap_or_else(|| cstr(&h[157..257]));
                out.push(Member {
                    name,
                    typeflag,
                    linkname,
                    offset: data,
                    size,
                });
            }
        }
        off = next;
    }
    Ok(out)
}

fn clean(name: &str) -> &str {
    name.trim_start_matches("./")
}

/// Blobs of the archive by digest: members and the synthesized manifest.
struct ArchiveSource {
    path: PathBuf,
    by_digest: HashMap<[u8; 32], Member>,
    manifest: (Descriptor, Vec<u8>),
}

impl BlobSource for ArchiveSource {
    fn open(&self, d: &Descriptor) -> Result<Option<(Box<dyn Read + '_>, u64)>> {
        if d.digest == self.manifest.0.digest {
            return Ok(Some((
                Box::new(std::io::Cursor::new(self.manifest.1.clone())),
                self.manifest.1.len() as u64,
            )));
        }
        let Some(m) = self.by_digest.get(&d.digest) else {
            return Ok(None);
        };
        let mut f = File::open(&self.path).map_err(|e| Error::io_path(&self.path, e))?;
        f.seek(SeekFrom::Start(m.offset))?;
        Ok(Some((
            Box::new(BufReader::with_capacity(256 * 1024, f).take(m.size)),
            m.size,
        )))
    }
}

fn read_member(path: &Path, m: &Member, limit: u64) -> Result<Vec<u8>> {
    if m.size > limit {
        return Err(Error::InvalidManifest {
            what: m.name.clone(),
            reason: format!("{} bytes, over the {limit}-byte limit", m.size),
        });
    }
    let f = File::open(path).map_err(|e| Error::io_path(path, e))?;
    let mut v = vec![0u8; m.size as usize];
    f.read_exact_at(&mut v, m.offset)?;
    Ok(v)
}

fn sha256(b: &[u8]) -> [u8; 32] {
    <sha2::Sha256 as sha2::Digest>::digest(b).into()
}

/// Imports one image of a docker-archive.
pub fn import_archive(
    batch: &mut dyn Batch,
    path: &Path,
    reference: Option<&ArchiveRef>,
    opts: &ImportOptions,
    known: crate::image::Known,
    progress: &dyn Fn(Progress),
) -> Result<(ImportReport, Vec<String>)> {
    let members = list_members(path)?;
    let find = |name: &str| {
        members
            .iter()
            .find(|m| clean(&m.name) == clean(name) && matches!(m.typeflag, b'0' | 0 | b'7'))
    };
    let bad = |r: String| Error::InvalidManifest {
        what: format!("{}: manifest.json", path.display()),
        reason: r,
    };
    let mj =
        find("manifest.json").ok_or_else(|| bad("the archive has no manifest.json (not a docker-archive?)".into()))?;
    let mj: Json = serde_json::from_slice(&read_member(path, mj, oci::MAX_MANIFEST)?)
        .map_err(|e| bad(format!("not JSON: {e}")))?;
    let images = mj.as_array().ok_or_else(|| bad("not a list".into()))?;
    let tags_of = |i: &Json| -> Vec<String> {
        i.get("RepoTags")
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let image = match reference {
        Some(ArchiveRef::Index(n)) => images
            .get(*n)
            .ok_or_else(|| bad(format!("no image @{n} (it has {})", images.len())))?,
        Some(ArchiveRef::Tag(t)) => images
            .iter()
            .find(|i| tags_of(i).iter().any(|x| crate::name::same(x, t)))
            .ok_or_else(|| Error::ImageNotFound(format!("{t} in {}", path.display())))?,
        None if images.len() == 1 => &images[0],
        None => {
            return Err(bad(format!(
                "the archive holds {} images: name one with docker-archive:PATH:NAME:TAG or :@N",
                images.len()
            )))
        }
    };
    let config_name = image
        .get("Config")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("image has no Config".into()))?;
    let layer_names: Vec<&str> = image
        .get("Layers")
        .and_then(Json::as_array)
        .ok_or_else(|| bad("image has no Layers".into()))?
        .iter()
        .map(|l| l.as_str().ok_or_else(|| bad("a layer name is not a string".into())))
        .collect::<Result<_>>()?;
    let config_m = find(config_name).ok_or_else(|| Error::MissingBlob {
        digest: config_name.to_string(),
        referrer: "manifest.json".into(),
    })?;
    let config_bytes = read_member(path, config_m, oci::MAX_MANIFEST)?;
    let config_digest = sha256(&config_bytes);
    if let Some(hex) = Path::new(config_name)
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| s.len() == 64)
    {
        if parse_digest(&format!("sha256:{hex}")).ok() != Some(config_digest) {
            return Err(Error::DigestMismatch {
                expected: format!("sha256:{hex}"),
                actual: format_digest(&config_digest),
                size: config_bytes.len() as u64,
                expected_size: config_m.size,
            });
        }
    }
    let config: Json = serde_json::from_slice(&config_bytes).map_err(|e| bad(format!("config is not JSON: {e}")))?;
    let diff_ids: Vec<&str> = config
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let mut by_digest = HashMap::new();
    by_digest.insert(config_digest, config_m.clone());
    let mut layers = Vec::new();
    let file = File::open(path).map_err(|e| Error::io_path(path, e))?;
    for (i, name) in layer_names.iter().enumerate() {
        let m = find(name).ok_or_else(|| Error::MissingBlob {
            digest: name.to_string(),
            referrer: "manifest.json".into(),
        })?;
        let mut head = [0u8; 4];
        let k = file.read_at(&mut head, m.offset)?;
        let media = if head[..k].starts_with(&[0x1f, 0x8b]) {
            oci::DOCKER_LAYER_GZIP
        } else if head[..k].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            oci::OCI_LAYER_ZSTD
        } else {
            oci::DOCKER_LAYER_TAR
        };
        // An uncompressed layer's digest is its diff_id (checked on import); others are hashed.
        let digest = match (media, diff_ids.get(i)) {
            (oci::DOCKER_LAYER_TAR, Some(d)) => parse_digest(d)?,
            _ => {
                let mut h = <sha2::Sha256 as sha2::Digest>::new();
                let mut f = File::open(path)?;
                f.seek(SeekFrom::Start(m.offset))?;
                std::io::copy(&mut f.take(m.size), &mut h)?;
                sha2::Digest::finalize(h).into()
            }
        };
        by_digest.insert(digest, m.clone());
        layers.push(json!({"mediaType": media, "size": m.size, "digest": format_digest(&digest)}));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": oci::DOCKER_MANIFEST,
        "config": {"mediaType": oci::DOCKER_CONFIG, "size": config_bytes.len(), "digest": format_digest(&config_digest)},
        "layers": layers,
    });
    let mbytes = serde_json::to_vec(&manifest).expect("json");
    let mdigest = sha256(&mbytes);
    let top = Descriptor::parse(
        &json!({"mediaType": oci::DOCKER_MANIFEST, "size": mbytes.len(), "digest": format_digest(&mdigest)}),
        "synthesized manifest",
    )?;
    // Member record: image blobs by digest, every other member verbatim.
    let blob_names: HashMap<String, [u8; 32]> = by_digest
        .iter()
        .map(|(d, m)| (clean(&m.name).to_string(), *d))
        .collect();
    let mut recs = Vec::new();
    {
        let mut w = DagWriter::new(batch);
        for m in &members {
            let name = Value::text(m.name.clone());
            recs.push(match m.typeflag {
                b'5' => Value::Array(vec![Value::text("dir"), name]),
                b'2' => Value::Array(vec![Value::text("symlink"), name, Value::text(m.linkname.clone())]),
                b'1' => Value::Array(vec![Value::text("hardlink"), name, Value::text(m.linkname.clone())]),
                _ => match blob_names.get(clean(&m.name)) {
                    Some(d) => Value::Array(vec![Value::text("blob"), name, Value::Bytes(d.to_vec())]),
                    None => {
                        let mut f = File::open(path)?;
                        f.seek(SeekFrom::Start(m.offset))?;
                        let links = w.put_chunked(&mut BufReader::new(f).take(m.size), m.size)?;
                        Value::Array(vec![
                            Value::text("file"),
                            name,
                            Value::UInt(m.size),
                            Value::links(&links),
                        ])
                    }
                },
            });
        }
    }
    let tags = tags_of(image);
    let archive = Value::map([
        ("tags", Value::Array(tags.iter().cloned().map(Value::Text).collect())),
        ("members", Value::Array(recs)),
    ]);
    let src = ArchiveSource {
        path: path.to_path_buf(),
        by_digest,
        manifest: (top.clone(), mbytes),
    };
    Ok((
        import_image(batch, &src, &top, Some(archive), opts, known, progress)?,
        tags,
    ))
}

struct TarOut<W: Write> {
    w: W,
}

impl<W: Write> TarOut<W> {
    fn entry(
        &mut self,
        name: &str,
        typeflag: u8,
        size: u64,
        linkname: &str,
        data: Option<&mut dyn Read>,
    ) -> Result<()> {
        let mode = if typeflag == b'5' { 0o755 } else { 0o644 };
        self.w.write_all(
            &crate::tar::HeaderBuilder {
                linkname: linkname.as_bytes(),
                mode,
                ..crate::tar::HeaderBuilder::new(name.as_bytes(), typeflag, size)
            }
            .with_long_names(),
        )?;
        if let Some(r) = data {
            let n = std::io::copy(&mut r.take(size), &mut self.w).map_err(crate::dag::unwrap_io)?;
            if n != size {
                return Err(Error::Store(format!("member {name}: {n} of {size} bytes")));
            }
            // Drain so a verifying reader gets to check its digest at the end.
            let extra = std::io::copy(r, &mut std::io::sink()).map_err(crate::dag::unwrap_io)?;
            if extra != 0 {
                return Err(Error::Store(format!("member {name}: longer than recorded")));
            }
            let pad = (512 - size % 512) % 512;
            self.w.write_all(&vec![0u8; pad as usize])?;
        }
        Ok(())
    }
    fn finish(mut self) -> Result<()> {
        self.w.write_all(&[0u8; 1024])?;
        Ok(())
    }
}

/// Writes the image as a docker-archive at `path`. An image that came from a docker-archive is
/// written back member for member when `tag` is None or one of its tags (compared as names:
/// `holdout/curl:latest` is the archive's `docker.io/holdout/curl:latest`).
/// Blob bytes come from `open` (see [`crate::image::OpenBlob`]).
pub fn export_archive<'s>(
    store: &dyn Blockstore,
    root: &ImageRoot,
    path: &Path,
    tag: Option<&str>,
    progress: &dyn Fn(Progress),
    open: &crate::image::OpenBlob<'s>,
) -> Result<()> {
    let blobs = root.blobs(store)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::publish::publish(path, |w| {
        let mut out = TarOut { w };
        let verbatim = root.archive.as_ref().filter(|a| {
            let tags: Vec<&str> = a
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| t.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            tag.is_none_or(|t| tags.iter().any(|x| crate::name::same(x, t)))
        });
        progress(Progress::Planned {
            blobs: blobs.len(),
            bytes: blobs.iter().map(|b| b.node.size).sum(),
        });
        if let Some(a) = verbatim {
            let members = a
                .get("members")
                .and_then(Value::as_array)
                .ok_or_else(|| crate::dag::schema_err(&root.cid, "archive members missing"))?;
            for m in members {
                let f = m
                    .as_array()
                    .ok_or_else(|| crate::dag::schema_err(&root.cid, "archive member is not a list"))?;
                let kind = f.first().and_then(Value::as_str).unwrap_or("");
                let name = f
                    .get(1)
                    .and_then(Value::as_str)
                    .ok_or_else(|| crate::dag::schema_err(&root.cid, "archive member has no name"))?;
                match kind {
                    "dir" => out.entry(name, b'5', 0, "", None)?,
                    "symlink" | "hardlink" => {
                        let target = f.get(2).and_then(Value::as_str).unwrap_or("");
                        out.entry(name, if kind == "symlink" { b'2' } else { b'1' }, 0, target, None)?
                    }
                    "blob" => {
                        let d = f
                            .get(2)
                            .and_then(Value::as_bytes)
                            .ok_or_else(|| crate::dag::schema_err(&root.cid, "blob member has no digest"))?;
                        let b = blobs.iter().find(|b| b.node.digest[..] == *d).ok_or_else(|| {
                            crate::dag::schema_err(&root.cid, format!("member {name} names a blob the image lacks"))
                        })?;
                        progress(Progress::Blob {
                            digest: b.node.digest_str(),
                            size: b.node.size,
                        });
                        out.entry(name, b'0', b.node.size, "", Some(&mut *open(&b.node)))?
                    }
                    "file" => {
                        let size = f
                            .get(2)
                            .and_then(Value::as_u64)
                            .ok_or_else(|| crate::dag::schema_err(&root.cid, "file member has no size"))?;
                        let links = crate::dag::links_of(&root.cid, f.get(3), "file member links")?;
                        out.entry(name, b'0', size, "", Some(&mut DagReader::new(store, &links)))?
                    }
                    k => {
                        return Err(crate::dag::schema_err(
                            &root.cid,
                            format!("unknown archive member kind {k:?}"),
                        ))
                    }
                }
            }
        } else {
            write_generated(store, &blobs, &mut out, tag, dir, open)?;
        }
        out.finish()?;
        Ok(())
    })
}

fn write_generated<W: Write>(
    store: &dyn Blockstore,
    blobs: &[crate::image::ImageBlob],
    out: &mut TarOut<W>,
    tag: Option<&str>,
    dir: &Path,
    open: &crate::image::OpenBlob<'_>,
) -> Result<()> {
    // One image manifest: the top one, or the host's platform from an index.
    let manifest = crate::image::pick_manifest(blobs, None)?;
    let doc = manifest.doc.as_ref().unwrap();
    let cfg = doc.config.as_ref().ok_or_else(|| Error::InvalidManifest {
        what: manifest.node.digest_str(),
        reason: "no config".into(),
    })?;
    let node_of = |d: &[u8; 32]| -> Result<&BlobNode> {
        blobs
            .iter()
            .find(|b| &b.node.digest == d)
            .map(|b| &b.node)
            .ok_or_else(|| Error::MissingBlob {
                digest: format_digest(d),
                referrer: manifest.node.digest_str(),
            })
    };
    let cfg_node = node_of(&cfg.digest)?;
    let cfg_name = format!("{}.json", &cfg.digest_str[7..]);
    out.entry(&cfg_name, b'0', cfg_node.size, "", Some(&mut *open(cfg_node)))?;
    let mut layer_names = Vec::new();
    for l in &doc.layers {
        let node = node_of(&l.digest)?;
        if node.enc == "tar" {
            let name = format!("{}.tar", &l.digest_str[7..]);
            out.entry(&name, b'0', node.size, "", Some(&mut *open(node)))?;
            layer_names.push(name);
        } else {
            // Compressed: decode to a temporary file to learn the tar's size and diff_id.
            let tmp = dir.join(format!(".shp-layer-{}.tmp{}", &l.digest_str[7..19], std::process::id()));
            let mut h = Hasher(
                <sha2::Sha256 as sha2::Digest>::new(),
                File::create(&tmp).map_err(|e| Error::io_path(&tmp, e))?,
            );
            let res = std::io::copy(&mut node.open_tar(store)?, &mut h).map_err(crate::dag::unwrap_io);
            let size = match res {
                Ok(n) => n,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            };
            let diff: [u8; 32] = sha2::Digest::finalize(h.0).into();
            let name = format!("{}.tar", &format_digest(&diff)[7..]);
            let r = File::open(&tmp);
            let _ = std::fs::remove_file(&tmp);
            out.entry(&name, b'0', size, "", Some(&mut BufReader::new(r?)))?;
            layer_names.push(name);
        }
    }
    let tags: Vec<&str> = tag.into_iter().collect();
    let mj = serde_json::to_vec(&json!([{"Config": cfg_name, "RepoTags": tags, "Layers": layer_names}])).expect("json");
    out.entry("manifest.json", b'0', mj.len() as u64, "", Some(&mut &mj[..]))?;
    Ok(())
}

struct Hasher(sha2::Sha256, File);

impl Write for Hasher {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(&mut self.0, b);
        self.1.write_all(b)?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.1.flush()
    }
}
