//! `docker://` references: `docker://[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`, normalised the way
//! docker and skopeo do (Docker Hub is the default registry, `library/` the default namespace).

use super::Error;

/// The registry a reference names when it names none.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API is actually served.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed `docker://` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRef {
    /// The registry as users name it (`docker.io`, `127.0.0.1:5000`, `ghcr.io`).
    pub registry: String,
    /// The full repository path (`library/busybox`, `org/app`).
    pub repository: String,
    /// The tag (`latest` when neither a tag nor a digest was given).
    pub tag: Option<String>,
    /// A pinned manifest digest (`sha256:…`).
    pub digest: Option<String>,
}

impl RemoteRef {
    /// Parses `docker://…` (the transport prefix is required).
    pub fn parse(s: &str) -> Result<RemoteRef, Error> {
        let bad = |r: &str| Error::InvalidReference {
            reference: s.to_string(),
            reason: r.to_string(),
        };
        let rest = s
            .strip_prefix("docker://")
            .ok_or_else(|| bad("expected docker://[REGISTRY/]REPOSITORY[:TAG][@DIGEST]"))?;
        let (name_tag, digest) = match rest.split_once('@') {
            Some((n, d)) => {
                shp_core::cid::parse_digest(d)
                    .map_err(|_| bad("the digest after @ is not sha256:<64 lowercase hex>"))?;
                (n, Some(d.to_string()))
            }
            None => (rest, None),
        };
        let (name, tag) = match name_tag.rfind(':') {
            Some(i) if !name_tag[i + 1..].contains('/') => (&name_tag[..i], Some(name_tag[i + 1..].to_string())),
            _ => (name_tag, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && !t.starts_with(['.', '-'])
                && t.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return Err(bad(&format!(
                    "invalid tag {t:?} (1 to 128 of [A-Za-z0-9_.-], not starting with . or -)"
                )));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if registry.is_empty()
            || registry
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        {
            return Err(bad(&format!("invalid registry {registry:?}")));
        }
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if repository.is_empty() {
            return Err(bad("no repository"));
        }
        for comp in repository.split('/') {
            let ok = !comp.is_empty()
                && comp.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && comp.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && comp
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
            if !ok {
                return Err(bad(&format!(
                    "invalid repository component {comp:?} (lowercase letters, digits and . _ - between them)"
                )));
            }
        }
        if repository.len() > 255 {
            return Err(bad("repository name longer than 255 characters"));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(RemoteRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host (and port) the registry API is served from.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What `/v2/<repo>/manifests/<reference>` is asked for: the digest if pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .expect("a tag or a digest")
    }

    /// The name an imported image gets by default: `REGISTRY/REPOSITORY:TAG` (None when only a
    /// digest was given).
    pub fn default_name(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}/{}:{t}", self.registry, self.repository))
    }
}

impl std::fmt::Display for RemoteRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "docker://{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RemoteRef {
        RemoteRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_normalisation() {
        let r = p("docker://busybox");
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.tag.as_deref(),
                r.api_host()
            ),
            ("docker.io", "library/busybox", Some("latest"), "registry-1.docker.io")
        );
        assert_eq!(r.to_string(), "docker://docker.io/library/busybox:latest");
        let r = p("docker://docker.io/busybox:1.36");
        assert_eq!(
            (r.repository.as_str(), r.tag.as_deref()),
            ("library/busybox", Some("1.36"))
        );
        let r = p("docker://index.docker.io/library/alpine:3");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/alpine")
        );
        let r = p("docker://bitnami/redis:7");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "bitnami/redis")
        );
        assert_eq!(r.default_name().unwrap(), "docker.io/bitnami/redis:7");
    }

    #[test]
    fn other_registries() {
        let r = p("docker://127.0.0.1:5000/busybox:1");
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.tag.as_deref(),
                r.api_host()
            ),
            ("127.0.0.1:5000", "busybox", Some("1"), "127.0.0.1:5000")
        );
        let r = p("docker://localhost/a/b/c");
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("localhost", "a/b/c"));
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = p(&format!("docker://quay.io/x/y@{d}"));
        assert_eq!((r.tag.as_deref(), r.digest.as_deref()), (None, Some(d)));
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.default_name(), None);
        let r = p(&format!("docker://quay.io/x/y:v2@{d}"));
        assert_eq!((r.tag.as_deref(), r.manifest_reference()), (Some("v2"), d));
        assert_eq!(r.to_string(), format!("docker://quay.io/x/y:v2@{d}"));
    }

    #[test]
    fn refused() {
        for bad in [
            "busybox",
            "docker://",
            "docker://Busybox",
            "docker://host.io/",
            "docker://host.io/a//b",
            "docker://busybox:",
            "docker://busybox:-x",
            "docker://busybox@sha256:zz",
            "docker://busybox:a b",
            "docker://-a/b",
        ] {
            let e = RemoteRef::parse(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidReference { .. }), "{bad}: {e}");
        }
    }
}
