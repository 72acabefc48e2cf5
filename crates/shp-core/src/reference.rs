//! Image references in skopeo's transport grammar, and image identifiers (CID or name).

use crate::cid::Cid;
use crate::error::{Error, Result};
use std::path::PathBuf;

/// Where an image comes from or goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `oci:PATH[:REF]`: an OCI image layout directory and an optional ref name.
    Oci { path: PathBuf, reference: Option<String> },
    /// `docker-archive:PATH[:NAME:TAG|:@INDEX]`: a `docker save` tarball.
    DockerArchive {
        path: PathBuf,
        reference: Option<ArchiveRef>,
    },
}

/// Which image of a docker-archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveRef {
    Tag(String),
    Index(usize),
}

impl std::str::FromStr for ImageRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<ImageRef> {
        let bad = |r: &str| Error::InvalidReference {
            reference: s.to_string(),
            reason: r.to_string(),
        };
        let (transport, rest) = s
            .split_once(':')
            .ok_or_else(|| bad("expected TRANSPORT:PATH (oci: or docker-archive:)"))?;
        match transport {
            "oci" => {
                let (path, reference) = match rest.split_once(':') {
                    Some((p, r)) => (p, Some(r)),
                    None => (rest, None),
                };
                if path.is_empty() {
                    return Err(bad("empty path"));
                }
                if let Some(r) = reference {
                    if r.is_empty() || r.chars().any(|c| c.is_whitespace() || c.is_control()) {
                        return Err(bad("invalid ref name"));
                    }
                }
                Ok(ImageRef::Oci {
                    path: path.into(),
                    reference: reference.map(str::to_string),
                })
            }
            "docker-archive" => {
                let (path, reference) = match rest.split_once(':') {
                    Some((p, r)) => (p, Some(r)),
                    None => (rest, None),
                };
                if path.is_empty() {
                    return Err(bad("empty path"));
                }
                let reference = match reference {
                    None => None,
                    Some(r) if r.starts_with('@') => Some(ArchiveRef::Index(
                        r[1..].parse().map_err(|_| bad("@INDEX must be a number"))?,
                    )),
                    Some(r) => {
                        // A tag of an image name (compared as docker compares names, see
                        // `crate::name`); `localhost:5000/app` has a port, not a tag.
                        let name = crate::name::Name::parse(r).map_err(|e| match e {
                            Error::InvalidReference { reason, .. } => bad(&format!("NAME:TAG {r:?}: {reason}")),
                            e => e,
                        })?;
                        if name.digest().is_some() || !tag_given(r) {
                            return Err(bad("expected NAME:TAG after the path"));
                        }
                        Some(ArchiveRef::Tag(r.to_string()))
                    }
                };
                Ok(ImageRef::DockerArchive {
                    path: path.into(),
                    reference,
                })
            }
            "docker" => Err(bad(
                "docker:// registries are not supported yet (use oci: or docker-archive:)",
            )),
            other => Err(bad(&format!(
                "unknown transport {other:?} (expected oci: or docker-archive:)"
            ))),
        }
    }
}

/// Whether a name spells its tag out (`a:1`, not `a` or `localhost:5000/a`).
fn tag_given(name: &str) -> bool {
    name.rfind(':').is_some_and(|i| !name[i + 1..].contains('/'))
}

/// An image in the store: by root CID or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageId {
    Cid(Cid),
    Name(String),
}

impl ImageId {
    pub fn parse(s: &str) -> ImageId {
        match s.parse::<Cid>() {
            Ok(c) => ImageId::Cid(c),
            Err(_) => ImageId::Name(s.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        assert_eq!(
            "oci:/a/b:latest".parse::<ImageRef>().unwrap(),
            ImageRef::Oci {
                path: "/a/b".into(),
                reference: Some("latest".into())
            }
        );
        assert_eq!(
            "oci:dir".parse::<ImageRef>().unwrap(),
            ImageRef::Oci {
                path: "dir".into(),
                reference: None
            }
        );
        assert_eq!(
            "docker-archive:x.tar:foo/bar:v1".parse::<ImageRef>().unwrap(),
            ImageRef::DockerArchive {
                path: "x.tar".into(),
                reference: Some(ArchiveRef::Tag("foo/bar:v1".into()))
            }
        );
        assert_eq!(
            "docker-archive:x.tar:localhost:5000/app:v1"
                .parse::<ImageRef>()
                .unwrap(),
            ImageRef::DockerArchive {
                path: "x.tar".into(),
                reference: Some(ArchiveRef::Tag("localhost:5000/app:v1".into()))
            }
        );
        assert_eq!(
            "docker-archive:x.tar:@1".parse::<ImageRef>().unwrap(),
            ImageRef::DockerArchive {
                path: "x.tar".into(),
                reference: Some(ArchiveRef::Index(1))
            }
        );
        for bad in [
            "",
            "oci:",
            "foo:bar",
            "docker-archive:x.tar:notag",
            "docker-archive:x.tar:localhost:5000/app",
            "docker-archive:x.tar:Upper:1",
            "docker-archive:x.tar:a:",
            "docker-archive:x.tar:a b:1",
            "docker://x/y:z",
            "nocolon",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad}");
        }
    }
}
