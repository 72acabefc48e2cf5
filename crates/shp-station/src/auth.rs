//! Push (and optionally pull) authentication.
//!
//! - `off` — no checks (the default; refused on a non-loopback address unless `--insecure-public`).
//! - `htpasswd:FILE` — HTTP Basic against bcrypt entries (`htpasswd -B`: `user:$2y$…`).
//! - `token:SECRET` — `Authorization: Bearer SECRET` (Basic with SECRET as the password is
//!   accepted too, so `skopeo --creds any:SECRET` works).
//!
//! Writes (every method but GET and HEAD) need credentials when auth is on; reads need them only
//! with `auth_reads`. `GET /v2/` always asks for them when auth is on: that is how Docker-style
//! clients learn the challenge before a push (the reads themselves stay open).

use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("--auth {0:?}: expected off, htpasswd:FILE or token:SECRET")]
    Spec(String),
    #[error("htpasswd file {path}: {reason}")]
    Htpasswd { path: String, reason: String },
}

/// What `--auth` says, before any file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSpec {
    Off,
    Htpasswd(PathBuf),
    Token(String),
}

impl AuthSpec {
    pub fn parse(s: &str) -> Result<AuthSpec, AuthError> {
        match s.split_once(':') {
            _ if s == "off" || s == "none" => Ok(AuthSpec::Off),
            Some(("htpasswd", f)) if !f.is_empty() => Ok(AuthSpec::Htpasswd(f.into())),
            Some(("token", t)) if !t.is_empty() => Ok(AuthSpec::Token(t.to_string())),
            _ => Err(AuthError::Spec(s.to_string())),
        }
    }

    pub fn is_off(&self) -> bool {
        *self == AuthSpec::Off
    }

    /// How the spec is shown in logs (the token itself is never printed).
    pub fn describe(&self) -> String {
        match self {
            AuthSpec::Off => "off".into(),
            AuthSpec::Htpasswd(p) => format!("htpasswd:{}", p.display()),
            AuthSpec::Token(_) => "token".into(),
        }
    }
}

/// The result of checking one request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Good credentials, or none needed.
    Allowed,
    /// No or wrong credentials: answer 401 with this `WWW-Authenticate` value.
    Challenge(String),
}

/// A loaded authenticator.
pub struct Auth {
    mode: Mode,
    reads: bool,
    /// sha256 of Authorization headers already verified (bcrypt is slow on purpose; clients send
    /// the same header on every request).
    verified: Mutex<HashSet<[u8; 32]>>,
}

enum Mode {
    Off,
    Htpasswd(HashMap<String, String>),
    Token(String),
}

const REALM: &str = "shp";

impl Auth {
    /// Loads the htpasswd file if any. Only bcrypt entries are accepted: other hash kinds are
    /// refused with the line named, rather than silently never matching.
    pub fn load(spec: &AuthSpec, reads: bool) -> Result<Auth, AuthError> {
        let mode = match spec {
            AuthSpec::Off => Mode::Off,
            AuthSpec::Token(t) => Mode::Token(t.clone()),
            AuthSpec::Htpasswd(path) => Mode::Htpasswd(load_htpasswd(path)?),
        };
        Ok(Auth {
            mode,
            reads,
            verified: Mutex::new(HashSet::new()),
        })
    }

    pub fn is_on(&self) -> bool {
        !matches!(self.mode, Mode::Off)
    }

    /// Whether a request of this kind needs credentials.
    pub fn needed(&self, read: bool, base: bool) -> bool {
        self.is_on() && (!read || self.reads || base)
    }

    fn challenge(&self) -> String {
        match self.mode {
            Mode::Token(_) => format!("Bearer realm=\"{REALM}\",service=\"{REALM}\""),
            _ => format!("Basic realm=\"{REALM}\""),
        }
    }

    /// Checks an `Authorization` header value. Blocking (bcrypt): call from a blocking thread.
    pub fn check(&self, authorization: Option<&str>) -> Verdict {
        if !self.is_on() {
            return Verdict::Allowed;
        }
        let Some(h) = authorization else {
            return Verdict::Challenge(self.challenge());
        };
        let key: [u8; 32] = Sha256::digest(h.as_bytes()).into();
        if self.verified.lock().expect("auth cache").contains(&key) {
            return Verdict::Allowed;
        }
        if self.verify(h) {
            let mut cache = self.verified.lock().expect("auth cache");
            if cache.len() > 1024 {
                cache.clear();
            }
            cache.insert(key);
            Verdict::Allowed
        } else {
            Verdict::Challenge(self.challenge())
        }
    }

    fn verify(&self, h: &str) -> bool {
        let (scheme, value) = h.trim().split_once(' ').unwrap_or((h, ""));
        let value = value.trim();
        let basic = || -> Option<(String, String)> {
            let raw = base64::engine::general_purpose::STANDARD.decode(value).ok()?;
            let s = String::from_utf8(raw).ok()?;
            let (u, p) = s.split_once(':')?;
            Some((u.to_string(), p.to_string()))
        };
        match &self.mode {
            Mode::Off => true,
            Mode::Token(secret) => {
                let given = if scheme.eq_ignore_ascii_case("bearer") {
                    value.to_string()
                } else if scheme.eq_ignore_ascii_case("basic") {
                    match basic() {
                        Some((_, p)) => p,
                        None => return false,
                    }
                } else {
                    return false;
                };
                constant_time_eq(given.as_bytes(), secret.as_bytes())
            }
            Mode::Htpasswd(users) => {
                if !scheme.eq_ignore_ascii_case("basic") {
                    return false;
                }
                let Some((user, pass)) = basic() else { return false };
                users
                    .get(&user)
                    .is_some_and(|hash| bcrypt::verify(pass.as_bytes(), hash).unwrap_or(false))
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Compare digests so the time does not depend on where the strings differ, nor on lengths.
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter().zip(y.iter()).fold(0u8, |acc, (p, q)| acc | (p ^ q)) == 0
}

fn load_htpasswd(path: &Path) -> Result<HashMap<String, String>, AuthError> {
    let err = |reason: String| AuthError::Htpasswd {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line
            .split_once(':')
            .ok_or_else(|| err(format!("line {}: expected user:hash", i + 1)))?;
        if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
            return Err(err(format!(
                "line {} (user {user:?}): only bcrypt entries are supported (htpasswd -B)",
                i + 1
            )));
        }
        users.insert(user.to_string(), hash.to_string());
    }
    if users.is_empty() {
        return Err(err("no users".into()));
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    }

    #[test]
    fn specs() {
        assert_eq!(AuthSpec::parse("off").unwrap(), AuthSpec::Off);
        assert_eq!(
            AuthSpec::parse("htpasswd:/x/y").unwrap(),
            AuthSpec::Htpasswd("/x/y".into())
        );
        assert_eq!(AuthSpec::parse("token:a:b").unwrap(), AuthSpec::Token("a:b".into()));
        for bad in ["", "token:", "htpasswd:", "basic:x", "on"] {
            assert!(AuthSpec::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(AuthSpec::Token("s3cret".into()).describe(), "token");
    }

    #[test]
    fn token_and_htpasswd() {
        let t = Auth::load(&AuthSpec::Token("s3cret".into()), false).unwrap();
        assert_eq!(t.check(Some("Bearer s3cret")), Verdict::Allowed);
        assert_eq!(t.check(Some(&basic("anyone", "s3cret"))), Verdict::Allowed);
        assert!(matches!(t.check(Some("Bearer s3cre")), Verdict::Challenge(c) if c.starts_with("Bearer realm=")));
        assert!(matches!(t.check(None), Verdict::Challenge(_)));
        assert!(t.needed(false, false) && !t.needed(true, false) && t.needed(true, true));

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("htpasswd");
        let hash = bcrypt::hash("pw", 4).unwrap();
        std::fs::write(&f, format!("# users\nalice:{hash}\n")).unwrap();
        let h = Auth::load(&AuthSpec::Htpasswd(f.clone()), true).unwrap();
        assert_eq!(h.check(Some(&basic("alice", "pw"))), Verdict::Allowed);
        assert_eq!(h.check(Some(&basic("alice", "pw"))), Verdict::Allowed);
        assert_eq!(
            h.check(Some(&basic("alice", "px"))),
            Verdict::Challenge("Basic realm=\"shp\"".into())
        );
        assert!(matches!(h.check(Some(&basic("bob", "pw"))), Verdict::Challenge(_)));
        assert!(matches!(h.check(Some("Bearer pw")), Verdict::Challenge(_)));
        assert!(h.needed(true, false));

        std::fs::write(&f, "alice:{SHA}abc\n").unwrap();
        let e = Auth::load(&AuthSpec::Htpasswd(f), false).err().unwrap().to_string();
        assert!(e.contains("line 1") && e.contains("bcrypt"), "{e}");
    }
}
