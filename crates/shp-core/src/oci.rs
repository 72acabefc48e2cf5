//! OCI and Docker manifest formats: media types, descriptors, and the children a manifest or
//! index names. Parsing is strict about what shp relies on and keeps everything else verbatim
//! (the JSON bytes themselves are stored as they came).

use crate::cid::parse_digest;
use crate::error::{Error, Result};
use serde_json::Value as Json;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Manifests larger than this are refused (the distribution spec's recommended limit).
pub const MAX_MANIFEST: u64 = 4 << 20;
const MAX_CHILDREN: usize = 10_000;

/// A content descriptor, with the original JSON kept for fields shp does not model.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: [u8; 32],
    pub digest_str: String,
    pub size: u64,
    pub json: Json,
}

impl Descriptor {
    pub fn parse(v: &Json, what: &str) -> Result<Descriptor> {
        let bad = |r: String| Error::InvalidManifest {
            what: what.to_string(),
            reason: r,
        };
        let obj = v.as_object().ok_or_else(|| bad("descriptor is not an object".into()))?;
        let media_type = obj.get("mediaType").and_then(Json::as_str).unwrap_or("").to_string();
        let digest_str = obj
            .get("digest")
            .and_then(Json::as_str)
            .ok_or_else(|| bad("descriptor has no digest".into()))?;
        let digest = parse_digest(digest_str).map_err(|e| bad(format!("descriptor digest: {e}")))?;
        let size = obj
            .get("size")
            .and_then(Json::as_u64)
            .ok_or_else(|| bad(format!("descriptor {digest_str} has no valid size")))?;
        Ok(Descriptor {
            media_type,
            digest,
            digest_str: digest_str.to_string(),
            size,
            json: v.clone(),
        })
    }

    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    pub fn is_manifest(&self) -> bool {
        self.media_type == OCI_MANIFEST || self.media_type == DOCKER_MANIFEST
    }

    /// Layers are blobs shp decodes and splits: tar streams, compressed or not.
    pub fn is_layer(&self) -> bool {
        let m = self.media_type.as_str();
        m.contains(".tar") || m.contains("rootfs.diff") || m.ends_with(".layer.v1.tar")
    }

    /// Foreign/non-distributable layers may be absent and are fetched from their URLs.
    pub fn has_urls(&self) -> bool {
        self.json
            .get("urls")
            .and_then(Json::as_array)
            .is_some_and(|u| !u.is_empty())
    }
}

/// What kind of document a manifest blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    Index,
    Manifest,
}

/// A parsed manifest or index: its kind and the descriptors it names, in order.
#[derive(Debug, Clone)]
pub struct Document {
    pub kind: DocKind,
    pub media_type: String,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub json: Json,
}

impl Document {
    /// Parses manifest/index bytes. `what` names it in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Document> {
        let bad = |r: String| Error::InvalidManifest {
            what: what.to_string(),
            reason: r,
        };
        let json: Json = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let obj = json.as_object().ok_or_else(|| bad("not a JSON object".into()))?;
        let schema = obj.get("schemaVersion").and_then(Json::as_u64);
        if schema == Some(1) {
            return Err(bad("docker schema1 manifests are not supported".into()));
        }
        if schema != Some(2) {
            return Err(bad("schemaVersion is not 2".into()));
        }
        let media_type = obj.get("mediaType").and_then(Json::as_str).unwrap_or("").to_string();
        let list = |key: &str| -> Result<Vec<Descriptor>> {
            match obj.get(key) {
                None => Ok(Vec::new()),
                Some(Json::Array(a)) => {
                    if a.len() > MAX_CHILDREN {
                        return Err(bad(format!("{key} has {} entries (limit {MAX_CHILDREN})", a.len())));
                    }
                    a.iter().map(|d| Descriptor::parse(d, what)).collect()
                }
                Some(_) => Err(bad(format!("{key} is not a list"))),
            }
        };
        let manifests = list("manifests")?;
        let is_index = media_type == OCI_INDEX
            || media_type == DOCKER_LIST
            || (media_type.is_empty() && obj.contains_key("manifests"));
        if is_index {
            return Ok(Document {
                kind: DocKind::Index,
                media_type,
                config: None,
                layers: Vec::new(),
                manifests,
                json,
            });
        }
        let config = obj.get("config").map(|c| Descriptor::parse(c, what)).transpose()?;
        if config.is_none() {
            return Err(bad("manifest has neither config nor manifests".into()));
        }
        let mut layers = list("layers")?;
        // Layers named only by media type: treat every layer of an image manifest as a layer.
        for l in &mut layers {
            if l.media_type.is_empty() {
                l.media_type = "application/vnd.oci.image.layer.v1.tar".into();
            }
        }
        Ok(Document {
            kind: DocKind::Manifest,
            media_type,
            config,
            layers,
            manifests,
            json,
        })
    }

    /// Every descriptor the document names, in order, with whether it is a layer.
    pub fn children(&self) -> Vec<(&Descriptor, bool)> {
        let mut out: Vec<(&Descriptor, bool)> = Vec::new();
        out.extend(self.manifests.iter().map(|d| (d, false)));
        out.extend(self.config.iter().map(|d| (d, false)));
        out.extend(self.layers.iter().map(|d| (d, d.is_layer())));
        out
    }

    /// The platform a manifest descriptor in an index is for, as `os/arch[/variant]`.
    pub fn platform_of(d: &Descriptor) -> Option<String> {
        let p = d.json.get("platform")?;
        let os = p.get("os")?.as_str()?;
        let arch = p.get("architecture")?.as_str()?;
        Some(match p.get("variant").and_then(Json::as_str) {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_manifest_and_index() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}]}"#;
        let d = Document::parse(m, "m").unwrap();
        assert_eq!(d.kind, DocKind::Manifest);
        assert_eq!(d.children().len(), 2);
        assert!(d.children()[1].1);
        let bad = br#"{"schemaVersion":2,"config":{"digest":"sha256:zz","size":1}}"#;
        assert!(Document::parse(bad, "m").unwrap_err().to_string().contains("digest"));
        assert!(Document::parse(b"{\"schemaVersion\":1}", "m")
            .unwrap_err()
            .to_string()
            .contains("schema1"));
        assert!(Document::parse(b"[1]", "m").is_err());
    }
}
