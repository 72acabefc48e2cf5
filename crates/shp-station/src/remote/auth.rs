//! Registry credentials and challenges: `--creds USER:PASS`, auth files in containers' auth.json /
//! docker config.json format, and `WWW-Authenticate` challenges (Basic, Bearer).

use super::Error;
use base64::Engine;
use std::path::Path;

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <password>)", self.username)
    }
}

impl Credentials {
    /// `USER:PASS` (the password may contain `:`).
    pub fn parse(s: &str) -> Result<Credentials, Error> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }),
            _ => Err(Error::Auth(
                "credentials must be USER:PASS with a non-empty USER".into(),
            )),
        }
    }

    /// The `Authorization` header value for Basic authentication.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }

    /// The credentials an auth file (containers' auth.json or docker's config.json) holds for
    /// `registry` (as users name it: `docker.io`, `host:port`). None when it has none.
    pub fn from_authfile(path: &Path, registry: &str) -> Result<Option<Credentials>, Error> {
        let bad = |r: String| Error::Auth(format!("auth file {}: {r}", path.display()));
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let auths = match json.get("auths") {
            None => return Ok(None),
            Some(a) => a.as_object().ok_or_else(|| bad("\"auths\" is not an object".into()))?,
        };
        // Keys are a host, a host with a scheme and path (docker's `https://index.docker.io/v1/`)
        // or a host/namespace (containers' auth.json); the registry-wide entry is what applies.
        let wanted: Vec<&str> = if registry == super::reference::DOCKER_HUB {
            vec!["docker.io", "index.docker.io", "registry-1.docker.io"]
        } else {
            vec![registry]
        };
        for (key, entry) in auths {
            let host = key
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or("");
            if !wanted.contains(&host) {
                continue;
            }
            let what = |f: &str| bad(format!("auths[{key:?}]: {f}"));
            if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()).filter(|a| !a.is_empty()) {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| what(&format!("\"auth\" is not base64: {e}")))?;
                let raw = String::from_utf8(raw).map_err(|_| what("\"auth\" is not UTF-8"))?;
                return Credentials::parse(&raw)
                    .map(Some)
                    .map_err(|_| what("\"auth\" does not decode to USER:PASS"));
            }
            let field = |f: &str| entry.get(f).and_then(|v| v.as_str()).map(str::to_string);
            if let (Some(username), Some(password)) = (field("username"), field("password")) {
                return Ok(Some(Credentials { username, password }));
            }
            return Err(what("no \"auth\" (base64 USER:PASS) nor \"username\"/\"password\""));
        }
        Ok(None)
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses `Basic realm="…"` or `Bearer realm="…",service="…",scope="…"` (quoted values may
    /// hold commas).
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    }
}

fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name.trim().to_string(), value.trim().to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(Challenge::parse("Basic realm=\"basic-realm\""), Some(Challenge::Basic));
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse("bearer realm=http://127.0.0.1:1/t"),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(Challenge::parse("Bearer service=\"x\""), None);
        assert_eq!(Challenge::parse("Negotiate abc"), None);
    }

    #[test]
    fn creds_and_authfiles() {
        let c = Credentials::parse("me:pa:ss").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("me", "pa:ss"));
        assert_eq!(c.basic_header(), "Basic bWU6cGE6c3M=");
        assert!(!format!("{c:?}").contains("pa:ss"));
        assert!(Credentials::parse("nopass").is_err());
        assert!(Credentials::parse(":x").is_err());

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth.json");
        std::fs::write(
            &f,
            r#"{"auths": {"127.0.0.1:5000": {"auth": "dTpw"}, "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "quay.io/org": {"username": "q", "password": "w"}, "bad.io": {"auth": "!!"}}}"#,
        )
        .unwrap();
        let get = |r: &str| Credentials::from_authfile(&f, r);
        assert_eq!(get("127.0.0.1:5000").unwrap().unwrap().username, "u");
        assert_eq!(get("docker.io").unwrap().unwrap().password, "secret");
        assert_eq!(get("quay.io").unwrap().unwrap().username, "q");
        assert_eq!(get("ghcr.io").unwrap(), None);
        let e = get("bad.io").unwrap_err().to_string();
        assert!(e.contains("bad.io") && e.contains("base64"), "{e}");
        std::fs::write(&f, "not json").unwrap();
        assert!(get("x").unwrap_err().to_string().contains("not JSON"));
        assert!(Credentials::from_authfile(&dir.path().join("none"), "x").is_err());
    }
}
