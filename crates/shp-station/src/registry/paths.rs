//! Routing `/v2/…` paths by hand: repository names contain slashes, so the endpoint is found from
//! the end of the path (`…/manifests/<ref>`, `…/blobs/uploads/<id>`, `…/tags/list`, …).

use super::ApiError;
use axum::http::{Method, StatusCode};
use shp_core::Cid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Base,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    /// An upload: none to start one (POST), else its id.
    Upload(String, Option<String>),
    Referrers(String, String),
}

impl Route {
    pub fn repo(&self) -> Option<&str> {
        match self {
            Route::Base => None,
            Route::Tags(r)
            | Route::Manifest(r, _)
            | Route::Blob(r, _)
            | Route::Upload(r, _)
            | Route::Referrers(r, _) => Some(r),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Route::Base => "/v2/".into(),
            Route::Tags(r) => format!("/v2/{r}/tags/list"),
            Route::Manifest(r, _) => format!("/v2/{r}/manifests/<reference>"),
            Route::Blob(r, _) => format!("/v2/{r}/blobs/<digest>"),
            Route::Upload(r, None) => format!("/v2/{r}/blobs/uploads/"),
            Route::Upload(r, Some(_)) => format!("/v2/{r}/blobs/uploads/<id>"),
            Route::Referrers(r, _) => format!("/v2/{r}/referrers/<digest>"),
        }
    }
}

/// `sha256:<64 lowercase hex>`.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Checks a repository name against the spec's grammar.
pub fn check_repo(name: &str) -> Result<(), ApiError> {
    if name.len() > 255 || !name.split('/').all(shp_core::name::is_component) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            format!(
                "invalid repository name {name:?}: lowercase components [a-z0-9]+ joined by '.', '_', '__' or '-', separated by '/', at most 255 characters"
            ),
        )
        .detail(serde_json::json!({ "name": name })));
    }
    Ok(())
}

/// The root of `ipfs/<cid>`, the read-only view of a stored DAG.
pub fn ipfs_root(repo: &str) -> Option<Cid> {
    repo.strip_prefix("ipfs/")
        .filter(|c| !c.contains('/'))
        .and_then(|c| c.parse().ok())
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decodes a path segment or query part.
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h << 4) | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=b&c=d` → pairs, percent-decoded.
pub fn query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(&v.replace('+', " ")))
        })
        .collect()
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        format!("{path} is not an endpoint of the OCI distribution API"),
    )
}

/// Routes a request path (starting `/v2`).
pub fn route(path: &str, method: &Method) -> Result<Route, ApiError> {
    let rest = path.strip_prefix("/v2").ok_or_else(|| not_found(path))?;
    if rest.is_empty() || rest == "/" {
        return Ok(Route::Base);
    }
    let rest = rest.strip_prefix('/').ok_or_else(|| not_found(path))?;
    let segs: Vec<String> = rest.split('/').map(decode).collect();
    let n = segs.len();
    let repo_of = |k: usize| -> Result<String, ApiError> {
        if k == 0 {
            return Err(not_found(path));
        }
        let r = segs[..k].join("/");
        check_repo(&r)?;
        Ok(r)
    };
    let s = |i: usize| segs[i].as_str();
    let route = if n >= 3 && s(n - 3) == "blobs" && s(n - 2) == "uploads" {
        let id = Some(segs[n - 1].clone()).filter(|i| !i.is_empty());
        Route::Upload(repo_of(n - 3)?, id)
    } else if n >= 3 && s(n - 2) == "blobs" && s(n - 1) == "uploads" && *method == Method::POST {
        Route::Upload(repo_of(n - 2)?, None)
    } else if n >= 3 && s(n - 2) == "tags" && s(n - 1) == "list" {
        Route::Tags(repo_of(n - 2)?)
    } else if n >= 2 && s(n - 2) == "manifests" {
        Route::Manifest(repo_of(n - 2)?, segs[n - 1].clone())
    } else if n >= 2 && s(n - 2) == "blobs" {
        Route::Blob(repo_of(n - 2)?, segs[n - 1].clone())
    } else if n >= 2 && s(n - 2) == "referrers" {
        Route::Referrers(repo_of(n - 2)?, segs[n - 1].clone())
    } else {
        return Err(not_found(path));
    };
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let g = Method::GET;
        let r = |p: &str| route(p, &g).map_err(|e| e.code);
        assert_eq!(r("/v2/"), Ok(Route::Base));
        assert_eq!(r("/v2"), Ok(Route::Base));
        assert_eq!(
            r("/v2/a/b/c/manifests/latest"),
            Ok(Route::Manifest("a/b/c".into(), "latest".into()))
        );
        // A repository may have components named like endpoints.
        assert_eq!(
            r("/v2/blobs/manifests/blobs/sha256%3Aab"),
            Ok(Route::Blob("blobs/manifests".into(), "sha256:ab".into()))
        );
        assert_eq!(r("/v2/x/blobs/uploads/"), Ok(Route::Upload("x".into(), None)));
        assert_eq!(
            r("/v2/x/y/blobs/uploads/abc"),
            Ok(Route::Upload("x/y".into(), Some("abc".into())))
        );
        assert_eq!(
            route("/v2/x/y/blobs/uploads", &Method::POST).unwrap(),
            Route::Upload("x/y".into(), None)
        );
        assert_eq!(r("/v2/x/tags/list"), Ok(Route::Tags("x".into())));
        assert_eq!(
            r("/v2/x/referrers/sha256:a"),
            Ok(Route::Referrers("x".into(), "sha256:a".into()))
        );
        assert_eq!(r("/v2/Upper/manifests/x"), Err("NAME_INVALID"));
        assert_eq!(r("/v2/a..b/manifests/x"), Err("NAME_INVALID"));
        assert_eq!(r("/v2/a//b/manifests/x"), Err("NAME_INVALID"));
        assert_eq!(r("/v2/manifests/x"), Err("NAME_UNKNOWN"));
        assert_eq!(r("/v2/a/b"), Err("NAME_UNKNOWN"));
    }

    #[test]
    fn grammar() {
        for ok in ["a", "a-b", "a--b", "a__b", "a.b", "a_b", "library/busybox", "0"] {
            assert!(check_repo(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a___b", "a._b", "A", "a/", "/a", "a b"] {
            assert!(check_repo(bad).is_err(), "{bad}");
        }
        assert!(is_tag("latest") && is_tag("_x") && is_tag("v1.0-rc_2") && !is_tag(".x") && !is_tag("a:b"));
        assert!(!is_tag(&"a".repeat(129)) && is_tag(&"a".repeat(128)));
        assert!(is_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(!is_digest(&format!("sha256:{}", "A".repeat(64))) && !is_digest("sha256:abc"));
        assert_eq!(decode("sha256%3Aab%2"), "sha256:ab%2");
        assert_eq!(
            query("n=2&last=a%2Bb&x"),
            vec![
                ("n".into(), "2".into()),
                ("last".into(), "a+b".into()),
                ("x".into(), "".into())
            ]
        );
    }
}
