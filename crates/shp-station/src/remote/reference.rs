//! `docker://` references: `docker://[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`, normalised the way
//! docker and skopeo do (Docker Hub is the default registry, `library/` the default namespace) by
//! `shp_core::name`, so a default name (`docker.io/library/busybox:latest`) is the name every other
//! command reads.

use super::Error;

/// The registry a reference names when it names none.
pub const DOCKER_HUB: &str = shp_core::name::DOCKER_HUB;
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
    /// Parses `docker://…` (the transport prefix is required). The rest is an image name, read
    /// by `shp_core::name` (the rules every name in shp follows).
    pub fn parse(s: &str) -> Result<RemoteRef, Error> {
        let rest = s.strip_prefix("docker://").ok_or_else(|| Error::InvalidReference {
            reference: s.to_string(),
            reason: "expected docker://[REGISTRY/]REPOSITORY[:TAG][@DIGEST]".into(),
        })?;
        let name = shp_core::name::Name::parse(rest).map_err(|e| Error::InvalidReference {
            reference: s.to_string(),
            reason: match e {
                shp_core::Error::InvalidReference { reason, .. } => reason,
                e => e.to_string(),
            },
        })?;
        Ok(RemoteRef {
            registry: name.domain().to_string(),
            repository: name.path().to_string(),
            tag: name.tag().map(str::to_string),
            digest: name.digest().map(str::to_string),
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
