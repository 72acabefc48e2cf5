//! Image names (`busybox`, `holdout/curl:latest`, `localhost:5000/app@sha256:…`) read the way docker
//! and containers/image read them, so that two spellings of one name are one name.
//!
//! The rules: a first path component is a registry host only if it holds `.` or `:` or is
//! `localhost`; otherwise the host is `docker.io` (`index.docker.io` is the same host). A Docker
//! Hub name of one component is in `library/`. No tag and no digest means the tag `latest`; a
//! digest (`sha256:<64 hex>`) is kept as given. The repository path is lowercase only.
//!
//! ```
//! use shp_core::name::{normalize, Name};
//! assert_eq!(normalize("busybox").unwrap(), "docker.io/library/busybox:latest");
//! assert_eq!(normalize("index.docker.io/holdout/curl").unwrap(), "docker.io/holdout/curl:latest");
//! assert_eq!(Name::parse("docker.io/library/busybox:1.36").unwrap().familiar(), "busybox:1.36");
//! assert!(normalize("Busybox").is_err());
//! ```
//!
//! Nothing here is written into a block: names live in refs, and the image root keeps a
//! docker-archive's `RepoTags` exactly as the archive spelled them.

use crate::error::{Error, Result};
use std::borrow::Cow;
use std::fmt;

/// The registry a name names when it names none.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's legacy host name, the same registry as [`DOCKER_HUB`].
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// The namespace of Docker Hub's one-component names.
const OFFICIAL: &str = "library/";
/// Longest `host/path` docker accepts.
const MAX_NAME: usize = 255;
/// Longest tag docker accepts.
const MAX_TAG: usize = 128;

/// A parsed, normalised image name. `Display` gives the fully qualified form
/// (`docker.io/library/busybox:latest`); [`Name::familiar`] the short one docker prints.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Name {
    /// Parses and normalises `s`. The error names `s` and what is wrong with it.
    pub fn parse(s: &str) -> Result<Name> {
        let bad = |reason: String| Error::InvalidReference {
            reference: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(bad("an image name is not empty".into()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((n, d)) => {
                crate::cid::parse_digest(d)
                    .map_err(|_| bad(format!("the digest after @ ({d:?}) is not sha256:<64 lowercase hex>")))?;
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        let (named, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            check_tag(t).map_err(bad)?;
        }
        let (domain, path) = match named.split_once('/') {
            Some((first, path)) if is_host_like(first) => (first, path),
            _ => (DOCKER_HUB, named),
        };
        check_domain(domain).map_err(bad)?;
        let domain = if domain == DOCKER_HUB_LEGACY {
            DOCKER_HUB
        } else {
            domain
        };
        if path.is_empty() {
            return Err(bad("no repository path".into()));
        }
        for c in path.split('/') {
            check_component(c).map_err(bad)?;
        }
        let path = if domain == DOCKER_HUB && !path.contains('/') {
            format!("{OFFICIAL}{path}")
        } else {
            path.to_string()
        };
        if domain.len() + 1 + path.len() > MAX_NAME {
            return Err(bad(format!("the repository name is longer than {MAX_NAME} characters")));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Name {
            domain: domain.to_string(),
            path,
            tag,
            digest,
        })
    }

    /// The registry host, with its port if any (`docker.io`, `localhost:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry (`library/busybox`, `holdout/curl`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag: `latest` when the name had neither a tag nor a digest.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, when the name pins one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `domain/path`: what two names must share to be tags of one repository.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The short form docker prints: no `docker.io/`, no `library/` (`busybox:latest`,
    /// `holdout/curl:latest`, `localhost:5000/app:v1`). It parses back to the same name, so a
    /// Docker Hub path whose first component looks like a host keeps its `docker.io/`.
    pub fn familiar(&self) -> String {
        let first = self.path.split('/').next().unwrap_or("");
        let mut s = if self.domain == DOCKER_HUB && !(self.path.contains('/') && is_host_like(first)) {
            match self.path.strip_prefix(OFFICIAL) {
                Some(p) if !p.contains('/') => p.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.repository()
        };
        self.push_suffix(&mut s);
        s
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.repository();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl std::str::FromStr for Name {
    type Err = Error;
    fn from_str(s: &str) -> Result<Name> {
        Name::parse(s)
    }
}

/// The fully qualified form of `s` (`busybox` → `docker.io/library/busybox:latest`).
pub fn normalize(s: &str) -> Result<String> {
    Name::parse(s).map(|n| n.to_string())
}

/// What names are compared by: the fully qualified form of a valid name, and any other string
/// (a name stored before names were normalised, which no longer parses) as it is. Two strings
/// name the same image exactly when their keys are equal: the key of a valid name always holds
/// a `/` after a host, and is its own key, so it never equals the verbatim key of an invalid one.
pub fn key(s: &str) -> Cow<'_, str> {
    match Name::parse(s) {
        Ok(n) => Cow::Owned(n.to_string()),
        Err(_) => Cow::Borrowed(s),
    }
}

/// Whether `a` and `b` are two spellings of one name (see [`key`]).
pub fn same(a: &str, b: &str) -> bool {
    a == b || key(a) == key(b)
}

/// Docker's test for a registry host in the first component.
fn is_host_like(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(t: &str) -> std::result::Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = !t.is_empty()
        && t.len() <= MAX_TAG
        && t.starts_with(word)
        && t.chars().all(|c| word(c) || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid tag {t:?} (1 to {MAX_TAG} of [A-Za-z0-9_.-], not starting with . or -)"
        ))
    }
}

/// `host[:port]`: DNS labels (letters, digits, inner `-`) joined by `.`, or `[IPv6]`; port digits.
fn check_domain(d: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, after)) if !ip.is_empty() && ip.chars().all(|c| c.is_ascii_hexdigit() || c == ':') => match after
            {
                "" => (None, None),
                p => match p.strip_prefix(':') {
                    Some(port) => (None, Some(port)),
                    None => return Err(format!("invalid registry host {d:?}")),
                },
            },
            _ => return Err(format!("invalid registry host {d:?}")),
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.starts_with(|c: char| c.is_ascii_alphanumeric())
            && l.ends_with(|c: char| c.is_ascii_alphanumeric())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let host_ok = host.is_none_or(|h| h.split('.').all(label));
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!("invalid registry host {d:?}"))
    }
}

/// Whether `c` is one repository path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` (what the
/// distribution spec allows, and what the station's registry checks in request paths).
pub fn is_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    let mut ok = !b.is_empty() && alnum(b[0]) && alnum(b[b.len() - 1]);
    let mut i = 0;
    while ok && i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
    }
    ok
}

/// [`is_component`], with an error that says what is wrong.
fn check_component(c: &str) -> std::result::Result<(), String> {
    if c.chars().any(|ch| ch.is_ascii_uppercase()) {
        return Err(format!("repository name must be lowercase ({c:?})"));
    }
    if is_component(c) {
        Ok(())
    } else if c.is_empty() {
        Err("empty path component (a leading, trailing or doubled '/')".into())
    } else {
        Err(format!(
            "invalid path component {c:?} (lowercase letters and digits, joined by '.', '_', '__' or '-')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn n(s: &str) -> String {
        normalize(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_names() {
        for s in [
            "busybox",
            "busybox:latest",
            "library/busybox",
            "docker.io/busybox",
            "docker.io/library/busybox",
            "index.docker.io/library/busybox:latest",
            "index.docker.io/busybox",
        ] {
            assert_eq!(n(s), "docker.io/library/busybox:latest", "{s}");
        }
        assert_eq!(n("holdout/curl"), "docker.io/holdout/curl:latest");
        assert_eq!(n("docker.io/holdout/curl:latest"), "docker.io/holdout/curl:latest");
        assert_eq!(n("a/b/c:1.2"), "docker.io/a/b/c:1.2");
        // library/ is only added to one-component names
        assert_eq!(n("library/a/b"), "docker.io/library/a/b:latest");
    }

    #[test]
    fn other_registries() {
        assert_eq!(n("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(n("localhost/x"), "localhost/x:latest");
        assert_eq!(n("registry.example.com/a/b:tag"), "registry.example.com/a/b:tag");
        assert_eq!(n("127.0.0.1:5000/busybox:1"), "127.0.0.1:5000/busybox:1");
        assert_eq!(n("[::1]:5000/a"), "[::1]:5000/a:latest");
        // no '.', ':' and not localhost: a namespace on Docker Hub, not a host
        assert_eq!(n("myhost/a"), "docker.io/myhost/a:latest");
        // a port with no path is a tag of a Docker Hub name
        assert_eq!(n("localhost:5000"), "docker.io/library/localhost:5000");
        let r = Name::parse("registry.example.com:443/a/b:v2").unwrap();
        assert_eq!(
            (r.domain(), r.path(), r.tag(), r.digest()),
            ("registry.example.com:443", "a/b", Some("v2"), None)
        );
        assert_eq!(r.repository(), "registry.example.com:443/a/b");
    }

    #[test]
    fn digests_are_kept_and_imply_no_tag() {
        assert_eq!(n(&format!("x@{D}")), format!("docker.io/library/x@{D}"));
        let r = Name::parse(&format!("quay.io/x/y@{D}")).unwrap();
        assert_eq!((r.tag(), r.digest()), (None, Some(D)));
        assert_eq!(n(&format!("x:v1@{D}")), format!("docker.io/library/x:v1@{D}"));
    }

    #[test]
    fn familiar_form() {
        for (s, f) in [
            ("docker.io/library/busybox:latest", "busybox:latest"),
            ("busybox", "busybox:latest"),
            ("docker.io/holdout/curl", "holdout/curl:latest"),
            ("library/a/b:1", "library/a/b:1"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("index.docker.io/busybox:1.36", "busybox:1.36"),
            ("docker.io/a.b/c", "docker.io/a.b/c:latest"),
            ("docker.io/localhost/c", "docker.io/localhost/c:latest"),
            ("docker.io/a.b", "a.b:latest"),
        ] {
            assert_eq!(Name::parse(s).unwrap().familiar(), f, "{s}");
        }
        assert_eq!(Name::parse(&format!("x@{D}")).unwrap().familiar(), format!("x@{D}"));
    }

    #[test]
    fn refused_with_a_reason() {
        for (s, why) in [
            ("", "not empty"),
            ("Busybox", "must be lowercase"),
            ("holdout/Curl:latest", "must be lowercase"),
            ("busybox:", "invalid tag"),
            ("busybox:-x", "invalid tag"),
            ("busybox:a b", "invalid tag"),
            ("busybox:a+b", "invalid tag"),
            ("a b", "invalid path component"),
            ("-a/b", "invalid path component"),
            ("a..b", "invalid path component"),
            ("a$b", "invalid path component"),
            ("a/", "empty path component"),
            ("host.io/a//b", "empty path component"),
            ("host.io/", "no repository path"),
            ("/a", "empty path component"),
            ("x@sha256:zz", "the digest after @"),
            ("x@md5:00", "the digest after @"),
            ("ho_st.io/a", "invalid registry host"),
            ("host.io:port/a", "invalid registry host"),
            ("[zz]:1/a", "invalid registry host"),
            ("[zz]/a", "invalid path component"),
        ] {
            match Name::parse(s) {
                Err(Error::InvalidReference { reference, reason }) => {
                    assert_eq!(reference, s);
                    assert!(reason.contains(why), "{s:?}: {reason:?} does not say {why:?}");
                }
                other => panic!("{s:?} was not refused: {other:?}"),
            }
        }
        let long = format!("a/{}", "b".repeat(250));
        assert!(Name::parse(&long).is_err(), "over 255 characters once qualified");
        assert!(Name::parse(&format!("a:{}", "t".repeat(129))).is_err());
        assert!(Name::parse(&format!("a:{}", "t".repeat(128))).is_ok());
    }

    #[test]
    fn keys_compare_spellings() {
        assert!(same("busybox", "docker.io/library/busybox:latest"));
        assert!(same("holdout/curl", "docker.io/holdout/curl:latest"));
        assert!(same("app:v1", "index.docker.io/library/app:v1"));
        assert!(!same("app:v1", "app:v2"));
        assert!(!same("busybox", "localhost/busybox"));
        // names that do not parse are compared as they are
        assert!(same("Legacy", "Legacy"));
        assert!(!same("Legacy", "legacy"));
        assert_eq!(key("Legacy"), "Legacy");
    }

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,4}((\\.|_|__|-{1,2})[a-z0-9]{1,4}){0,2}"
    }

    /// A first component that is not host-like (docker reads `a_b.c/x` as a bad host, too).
    fn first_component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,4}((_|__|-{1,2})[a-z0-9]{1,4}){0,2}"
    }

    fn name_like() -> impl Strategy<Value = String> {
        let host = prop_oneof![
            Just(String::new()),
            Just("docker.io/".to_string()),
            Just("index.docker.io/".to_string()),
            Just("localhost/".to_string()),
            Just("localhost:5000/".to_string()),
            "[a-z]{1,5}\\.[a-z]{2,3}(:[0-9]{1,4})?/",
        ];
        let suffix = prop_oneof![
            Just(String::new()),
            "[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}".prop_map(|t| format!(":{t}")),
            Just(format!("@{D}")),
            "[a-z0-9]{1,3}".prop_map(|t| format!(":{t}@{D}")),
        ];
        let path = (
            first_component(),
            any::<bool>(),
            prop::collection::vec(component(), 0..3),
        );
        (host, path, suffix).prop_map(|(h, (first, dotted, path), s)| {
            // after a host, the first path component may look like one (`docker.io/a.b/c`)
            let first = if dotted && !h.is_empty() {
                format!("{first}.x")
            } else {
                first
            };
            let rest: String = path.iter().map(|c| format!("/{c}")).collect();
            format!("{h}{first}{rest}{s}")
        })
    }

    proptest! {
        #[test]
        fn normalization_is_idempotent(s in name_like()) {
            let once = normalize(&s).unwrap();
            prop_assert_eq!(normalize(&once).unwrap(), once.clone());
            let familiar = Name::parse(&s).unwrap().familiar();
            prop_assert_eq!(normalize(&familiar).unwrap(), once.clone());
            prop_assert!(same(&s, &once) && same(&familiar, &s));
            prop_assert_eq!(key(&once), key(&s));
        }

        #[test]
        fn any_string_is_parsed_or_refused_and_stays_idempotent(s in "\\PC{0,40}") {
            if let Ok(once) = normalize(&s) {
                prop_assert_eq!(normalize(&once).unwrap(), once);
            }
        }
    }
}
