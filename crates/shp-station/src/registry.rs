//! The OCI Distribution Spec 1.1 endpoints (`/v2/`) over a home.
//!
//! Mapping onto the home:
//! - A blob pushed (monolithic, chunked or mounted) is spooled to `HOME/store/tmp`, hashed as it
//!   arrives, and on completion stored with `Home::put_blob`: decomposed as a layer when its first
//!   bytes say tar/gzip/zstd (falling back to verbatim if it is not one), verbatim otherwise.
//!   Blobs form one content store shared by every repository (a mount of a stored blob always
//!   succeeds).
//! - A manifest pushed is `Home::commit_image`d and named `<repo>@<digest>` (so it is found by
//!   digest); a push by tag also names it `<repo>:<tag>`. Tags are the names of the repository,
//!   compared as docker compares names (`busybox` ≡ `library/busybox`, see `repo_names`).
//! - `ipfs/<cid>` is a read-only repository whose content is the image rooted at `<cid>`: every
//!   tag names its top manifest.
//!
//! Store work runs on blocking threads; blob bodies stream in both directions with bounded
//! buffers.

/// Request parsing (paths, names, digests, queries); public for the fuzz targets.
pub mod paths;
mod uploads;

pub use uploads::parse_content_range;

use crate::auth::{Auth, Verdict};
use crate::mirror::{Mirror, MirrorError, Target};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use futures_util::StreamExt;
use paths::{is_digest, is_tag, Route};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shp_core::blob::BlobNode;
use shp_core::cid::format_digest;
use shp_core::image::ImageRoot;
use shp_core::{Cid, Error, Home};
use std::io::Read;
use std::sync::Arc;
pub use uploads::Uploads;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DIGEST_HEADER: &str = "docker-content-digest";
const CHUNK: usize = 256 * 1024;

/// The registry's shared state.
pub struct Registry {
    pub home: Arc<Home>,
    pub auth: Auth,
    pub uploads: Uploads,
    /// Pull-through to upstream registries (`shp start --mirror`), if configured.
    pub mirror: Option<Arc<Mirror>>,
}

/// A spec error: status, code, message and optional detail.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<Value>,
    headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }
    fn detail(mut self, d: Value) -> ApiError {
        self.detail = Some(d);
        self
    }
    fn header(mut self, name: header::HeaderName, v: String) -> ApiError {
        self.headers.push((name, v));
        self
    }
    fn blob_unknown(d: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            format!("blob {d} is not known to this registry"),
        )
        .detail(json!({ "digest": d }))
    }
    fn manifest_unknown(repo: &str, r: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("manifest {r} is not known in repository {repo}"),
        )
        .detail(json!({ "name": repo, "reference": r }))
    }
    fn digest_invalid(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "DIGEST_INVALID", msg)
    }
    fn upload_unknown(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            format!("upload {id:?} is not in progress in this repository"),
        )
    }
    fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut err = json!({ "code": self.code, "message": self.message });
        if let Some(d) = self.detail {
            err["detail"] = d;
        }
        let body = serde_json::to_vec(&json!({ "errors": [err] })).expect("json");
        let mut res = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len());
        for (k, v) in self.headers {
            res = res.header(k, v);
        }
        res.body(Body::from(body)).expect("response")
    }
}

type ApiResult = Result<Response, ApiError>;

/// Maps an engine error to the spec's codes.
fn core_err(e: Error) -> ApiError {
    match e {
        Error::MissingBlob { digest, referrer } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
            format!("blob {digest} (referenced by {referrer}) is not known to this registry: push it first"),
        )
        .detail(json!({ "digest": digest })),
        e @ (Error::InvalidManifest { .. } | Error::Schema { .. } | Error::InvalidDigest(_)) => {
            ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", e.to_string())
        }
        e @ Error::DigestMismatch { .. } => ApiError::digest_invalid(e.to_string()),
        e @ Error::InvalidReference { .. } => ApiError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", e.to_string()),
        // 507: the request was fine; the station's disk is full (clients may retry later).
        e @ Error::NoSpace { .. } => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "UNKNOWN", e.to_string()),
        e => ApiError::internal(e),
    }
}

/// Runs store work on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?
}

/// The `/v2/` routes.
pub fn router(reg: Arc<Registry>) -> Router {
    Router::new()
        .route("/v2", any(handle))
        .route("/v2/", any(handle))
        .route("/v2/{*rest}", any(handle))
        .with_state(reg)
}

async fn handle(State(reg): State<Arc<Registry>>, req: Request) -> Response {
    let mut res = match dispatch(reg, req).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(code = e.code, "{}", e.message);
            } else {
                tracing::debug!(code = e.code, "{}", e.message);
            }
            e.into_response()
        }
    };
    res.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    res
}

async fn dispatch(reg: Arc<Registry>, req: Request) -> ApiResult {
    let method = req.method().clone();
    let read = method == Method::GET || method == Method::HEAD;
    let route = paths::route(req.uri().path(), &method)?;
    if reg.auth.needed(read, matches!(route, Route::Base)) {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let r = reg.clone();
        if let Verdict::Challenge(c) = blocking(move || Ok(r.auth.check(given.as_deref()))).await? {
            return Err(
                ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "authentication required")
                    .header(header::WWW_AUTHENTICATE, c),
            );
        }
    }
    let query = paths::query(req.uri().query().unwrap_or(""));
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let ns = q("ns");
    let hop = req.headers().contains_key(crate::mirror::HOP_HEADER);
    if let Some(repo) = route.repo() {
        if paths::ipfs_root(repo).is_some() && !read {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "DENIED",
                format!("{repo} is a read-only view of a stored DAG: push to another repository"),
            ));
        }
        if let Some(m) = &reg.mirror {
            if !read && m.is_mirror_path(ns.as_deref(), repo) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "DENIED",
                    format!("{repo}: the mirror is read-only (push to the station's own repositories, without ?ns= or an upstream host prefix)"),
                ));
            }
        }
    }
    // What the home lacks, a mirror fetches (never for the read-only DAG views).
    let mirror = |repo: &str| reg.mirror.clone().filter(|_| paths::ipfs_root(repo).is_none());
    match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => Ok(json_response(StatusCode::OK, &json!({}), None)),
        (Route::Tags(repo), Method::GET) => tags_list(&reg, repo, q("n"), q("last")).await,
        (Route::Manifest(repo, r), m @ (Method::GET | Method::HEAD)) => {
            let accept = accept_list(req.headers());
            let head = m == Method::HEAD;
            match (
                get_manifest(&reg, repo.clone(), r.clone(), accept.clone(), head).await,
                mirror(&repo),
            ) {
                (Err(e), Some(mi)) if e.code == "MANIFEST_UNKNOWN" => {
                    mirrored_manifest(mi, ns, hop, repo, r, accept, head).await
                }
                (res, _) => res,
            }
        }
        (Route::Manifest(repo, r), Method::PUT) => put_manifest(&reg, repo, r, req).await,
        (Route::Manifest(repo, r), Method::DELETE) => delete_manifest(&reg, repo, r).await,
        (Route::Blob(repo, d), m @ (Method::GET | Method::HEAD)) => {
            let head = m == Method::HEAD;
            match (
                get_blob(&reg, repo.clone(), d.clone(), req.headers(), head).await,
                mirror(&repo),
            ) {
                (Err(e), Some(mi)) if e.code == "BLOB_UNKNOWN" => {
                    mirrored_blob(mi, ns, hop, repo, d, req.headers(), head).await
                }
                (res, _) => res,
            }
        }
        (Route::Blob(_, d), Method::DELETE) => delete_blob(&reg, d).await,
        (Route::Upload(repo, None), Method::POST) => {
            start_upload(&reg, repo, q("digest"), q("mount"), q("from"), req).await
        }
        (Route::Upload(repo, Some(id)), Method::PATCH) => patch_upload(&reg, repo, id, req).await,
        (Route::Upload(repo, Some(id)), Method::PUT) => put_upload(&reg, repo, id, q("digest"), req).await,
        (Route::Upload(repo, Some(id)), Method::GET) => upload_status(&reg, repo, id),
        (Route::Upload(repo, Some(id)), Method::DELETE) => {
            reg.uploads.cancel(&repo, &id)?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (Route::Referrers(repo, d), Method::GET) => referrers(&reg, repo, d, q("artifactType")).await,
        (route, m) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            format!("{m} is not supported on {}", route.describe()),
        )),
    }
}

fn empty(status: StatusCode) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("response")
}

fn json_response(status: StatusCode, v: &Value, content_type: Option<&str>) -> Response {
    let body = serde_json::to_vec(v).expect("json");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type.unwrap_or("application/json"))
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .expect("response")
}

// ---------------------------------------------------------------------------------------------
// Names and tags

/// A name the home holds for a repository.
struct RepoName {
    /// The name as stored (what `Home::remove` is given).
    stored: String,
    /// `:tag` or `@digest` (a name holding both is found by its digest).
    rest: String,
    root: String,
}

/// Every name the home holds for a repository, matched as docker reads names
/// (`shp_core::name`): the repository is the path a client sent, read as a name (so `busybox`,
/// `library/busybox` and `docker.io/library/busybox` are one repository, Docker Hub's), and a
/// name stored without a tag (`shp push --tag busybox`) is its `:latest`. Names spelt exactly
/// `<repo>:<tag>` / `<repo>@<digest>` come first, so they win over other spellings of the same
/// tag in a home written before names were normalised.
fn repo_names(home: &Home, repo: &str) -> Result<Vec<RepoName>, ApiError> {
    let Ok(want) = shp_core::name::Name::parse(repo).map(|n| n.repository()) else {
        return Ok(Vec::new());
    };
    let refs = home.refs().map_err(core_err)?;
    let mut out: Vec<RepoName> = refs
        .names
        .into_iter()
        .filter_map(|(stored, root)| {
            let n = shp_core::name::Name::parse(&stored)
                .ok()
                .filter(|n| n.repository() == want)?;
            let rest = match (n.digest(), n.tag()) {
                (Some(d), _) => format!("@{d}"),
                (None, t) => format!(":{}", t?),
            };
            Some(RepoName { stored, rest, root })
        })
        .collect();
    out.sort_by_key(|n| n.stored != format!("{repo}{}", n.rest));
    Ok(out)
}

async fn tags_list(reg: &Arc<Registry>, repo: String, n: Option<String>, last: Option<String>) -> ApiResult {
    let n = match n {
        None => None,
        Some(s) => Some(s.parse::<usize>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                format!("n={s:?} is not a number"),
            )
        })?),
    };
    let home = reg.home.clone();
    let repo2 = repo.clone();
    let names = blocking(move || repo_names(&home, &repo2)).await?;
    if names.is_empty() && paths::ipfs_root(&repo).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("repository {repo} is not known to this registry"),
        )
        .detail(json!({ "name": repo })));
    }
    let mut tags: Vec<String> = names
        .into_iter()
        .filter_map(|n| n.rest.strip_prefix(':').map(str::to_string))
        .filter(|t| last.as_ref().is_none_or(|l| t > l))
        .collect();
    tags.sort();
    tags.dedup();
    let mut link = None;
    if let Some(n) = n {
        if tags.len() > n {
            tags.truncate(n);
            if let Some(l) = tags.last() {
                link = Some(format!("</v2/{repo}/tags/list?n={n}&last={l}>; rel=\"next\""));
            }
        }
    }
    let mut res = json_response(StatusCode::OK, &json!({ "name": repo, "tags": tags }), None);
    if let Some(l) = link {
        res.headers_mut()
            .insert(header::LINK, HeaderValue::from_str(&l).map_err(ApiError::internal)?);
    }
    Ok(res)
}

// ---------------------------------------------------------------------------------------------
// Manifests

/// A manifest found: its bytes, media type and digest.
struct Found {
    bytes: Vec<u8>,
    media_type: String,
    digest: String,
    /// For an index: its children (digest, media type, platform "os/arch").
    children: Vec<(String, String, Option<String>)>,
    /// The image root whose top manifest this is (sent as [`crate::mirror::ROOT_HEADER`]).
    root: Option<Cid>,
}

fn read_node(home: &Home, node: &BlobNode) -> Result<Vec<u8>, ApiError> {
    let mut v = Vec::with_capacity(node.size as usize);
    node.open(home.store())
        .read_to_end(&mut v)
        .map_err(|e| ApiError::internal(shp_core::dag::unwrap_io(e)))?;
    Ok(v)
}

/// Looks a manifest up in one image: its top (digest None) or any manifest/index it holds.
fn find_in_image(home: &Home, root: &Cid, digest: Option<&str>) -> Result<Option<Found>, ApiError> {
    let img = match ImageRoot::load(home.store(), root) {
        Ok(i) => i,
        Err(_) => return Ok(None),
    };
    let blobs = img.blobs(home.store()).map_err(core_err)?;
    for b in blobs {
        let Some(doc) = &b.doc else { continue };
        let is_top = b.parent.is_none();
        let hit = match digest {
            None => is_top,
            Some(d) => b.node.digest_str() == d,
        };
        if hit {
            let children = doc
                .manifests
                .iter()
                .map(|m| {
                    (
                        m.digest_str.clone(),
                        m.media_type.clone(),
                        shp_core::oci::Document::platform_of(m),
                    )
                })
                .collect();
            return Ok(Some(Found {
                bytes: read_node(home, &b.node)?,
                media_type: b.media_type.clone(),
                digest: b.node.digest_str(),
                children,
                root: is_top.then_some(*root),
            }));
        }
    }
    Ok(None)
}

fn find_manifest(home: &Home, repo: &str, reference: &str) -> Result<Option<Found>, ApiError> {
    let by_digest = is_digest(reference);
    if let Some(cid) = paths::ipfs_root(repo) {
        return find_in_image(home, &cid, by_digest.then_some(reference));
    }
    let names = repo_names(home, repo)?;
    let key = if by_digest {
        format!("@{reference}")
    } else {
        format!(":{reference}")
    };
    if let Some(n) = names.iter().find(|n| n.rest == key) {
        let cid: Cid = n.root.parse().map_err(core_err)?;
        if let Some(f) = find_in_image(home, &cid, None)? {
            return Ok(Some(f));
        }
    }
    if by_digest {
        // A manifest inside an index pushed under another name (e.g. by `shp push`).
        for n in &names {
            let cid: Cid = n.root.parse().map_err(core_err)?;
            if let Some(f) = find_in_image(home, &cid, Some(reference))? {
                return Ok(Some(f));
            }
        }
    }
    Ok(None)
}

fn accept_list(h: &HeaderMap) -> Vec<String> {
    h.get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn acceptable(accept: &[String], mt: &str) -> bool {
    accept.is_empty() || accept.iter().any(|a| a == mt || a == "*/*" || a == "application/*")
}

async fn get_manifest(reg: &Arc<Registry>, repo: String, r: String, accept: Vec<String>, head: bool) -> ApiResult {
    let home = reg.home.clone();
    let found = blocking(move || {
        let Some(f) = find_manifest(&home, &repo, &r)? else {
            return Err(ApiError::manifest_unknown(&repo, &r));
        };
        if acceptable(&accept, &f.media_type) {
            return Ok(f);
        }
        // An index the client cannot read: a client that reads image manifests gets the
        // linux/amd64 one (as Docker's registry does for manifest lists); anything else is refused.
        let is_index = f.media_type == OCI_INDEX || f.media_type == DOCKER_LIST;
        if is_index && !is_digest(&r) {
            let pick = f
                .children
                .iter()
                .find(|(_, mt, p)| acceptable(&accept, mt) && p.as_deref() == Some("linux/amd64"))
                .or_else(|| f.children.iter().find(|(_, mt, _)| acceptable(&accept, mt)));
            if let Some((d, _, _)) = pick {
                if let Some(c) = find_manifest(&home, &repo, d)? {
                    return Ok(c);
                }
            }
        }
        Err(not_acceptable(&repo, &r, &f.media_type, &accept))
    })
    .await?;
    let mut res = manifest_response(found.bytes, &found.media_type, &found.digest, head)?;
    if let Some(root) = found.root {
        // Another station's mirror can fetch the image's DAG by it (only the chunks it lacks).
        if let Ok(v) = HeaderValue::from_str(&root.to_string()) {
            res.headers_mut().insert(crate::mirror::ROOT_HEADER, v);
        }
    }
    Ok(res)
}

fn manifest_response(bytes: Vec<u8>, media_type: &str, digest: &str, head: bool) -> ApiResult {
    let res = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, media_type)
        .header(header::CONTENT_LENGTH, bytes.len())
        .header(DIGEST_HEADER, digest)
        .header(header::ETAG, format!("\"{digest}\""));
    let body = if head { Body::empty() } else { Body::from(bytes) };
    res.body(body).map_err(ApiError::internal)
}

fn not_acceptable(repo: &str, r: &str, media_type: &str, accept: &[String]) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
        format!(
            "manifest {r} in {repo} is {media_type}, which the Accept header ({}) does not allow",
            accept.join(", ")
        ),
    )
}

/// A mirror error as a spec error; `unknown` is the code for "the upstream has none".
fn mirror_err(e: MirrorError, unknown: &'static str) -> ApiError {
    match e {
        e @ MirrorError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, unknown, e.to_string()),
        e @ MirrorError::NoUpstream { .. } => ApiError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", e.to_string()),
        // The upstream is down or refused us: clients may retry, or go to the upstream themselves.
        e @ MirrorError::Unavailable { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", e.to_string())
        }
        e @ MirrorError::Mismatch { .. } => ApiError::new(StatusCode::BAD_GATEWAY, "UNKNOWN", e.to_string()),
        e => ApiError::internal(e),
    }
}

/// A manifest the home does not hold, from the mirror's upstream (with the same Accept rule as
/// held manifests: a client that cannot read an index gets its linux/amd64 manifest).
async fn mirrored_manifest(
    mirror: Arc<Mirror>,
    ns: Option<String>,
    hop: bool,
    repo: String,
    r: String,
    accept: Vec<String>,
    head: bool,
) -> ApiResult {
    let m = blocking(move || {
        let t = mirror
            .select(ns.as_deref(), &repo, hop)
            .map_err(|e| mirror_err(e, "NAME_UNKNOWN"))?;
        let got = |reference: &str| {
            mirror
                .manifest(&t, reference, !head)
                .map_err(|e| mirror_err(e, "MANIFEST_UNKNOWN"))
        };
        let m = got(&r)?;
        if acceptable(&accept, &m.media_type) {
            return Ok(m);
        }
        if (m.media_type == OCI_INDEX || m.media_type == DOCKER_LIST) && !is_digest(&r) {
            let doc = shp_core::oci::Document::parse(&m.bytes, "index").map_err(core_err)?;
            let platform = |d: &shp_core::oci::Descriptor| {
                let p = d.json.get("platform")?;
                Some(format!(
                    "{}/{}",
                    p.get("os")?.as_str()?,
                    p.get("architecture")?.as_str()?
                ))
            };
            let pick = doc
                .manifests
                .iter()
                .find(|d| acceptable(&accept, &d.media_type) && platform(d).as_deref() == Some("linux/amd64"))
                .or_else(|| doc.manifests.iter().find(|d| acceptable(&accept, &d.media_type)));
            if let Some(d) = pick {
                return got(&d.digest_str);
            }
        }
        Err(not_acceptable(&t.repo, &r, &m.media_type, &accept))
    })
    .await?;
    manifest_response(m.bytes, &m.media_type, &m.digest, head)
}

/// A blob the home does not hold, from the mirror's upstream: streamed as it arrives, checked
/// against its digest before the response ends.
async fn mirrored_blob(
    mirror: Arc<Mirror>,
    ns: Option<String>,
    hop: bool,
    repo: String,
    d: String,
    h: &HeaderMap,
    head: bool,
) -> ApiResult {
    if !is_digest(&d) {
        return Err(ApiError::digest_invalid(format!("{d:?} is not a sha256 digest")));
    }
    let (m, d2) = (mirror.clone(), d.clone());
    let (t, size): (Target, u64) = blocking(move || {
        let t = m
            .select(ns.as_deref(), &repo, hop)
            .map_err(|e| mirror_err(e, "NAME_UNKNOWN"))?;
        match m.blob_size(&t, &d2).map_err(|e| mirror_err(e, "BLOB_UNKNOWN"))? {
            Some(n) => Ok((t, n)),
            None => Err(ApiError::blob_unknown(&d2)),
        }
    })
    .await?;
    let digest = shp_core::cid::parse_digest(&d).map_err(core_err)?;
    let d2 = d.clone();
    blob_response(&d, size, h, head, move |start, len| {
        stream_reader(
            move || mirror.open_blob(&t, digest, size, start),
            len,
            start + len == size,
            d2,
        )
    })
}

async fn read_limited(body: Body, limit: u64) -> Result<Vec<u8>, ApiError> {
    let mut s = body.into_data_stream();
    let mut v = Vec::new();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "SIZE_INVALID", e.to_string()))?;
        if (v.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                format!("the manifest is over the {limit}-byte limit"),
            ));
        }
        v.extend_from_slice(&chunk);
    }
    Ok(v)
}

async fn put_manifest(reg: &Arc<Registry>, repo: String, r: String, req: Request) -> ApiResult {
    let by_digest = is_digest(&r);
    if !by_digest && !is_tag(&r) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            format!("{r:?} is neither a tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}) nor a sha256 digest"),
        ));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string());
    let bytes = read_limited(req.into_body(), shp_core::oci::MAX_MANIFEST).await?;
    let digest = format_digest(&Sha256::digest(&bytes).into());
    if by_digest && digest != r {
        return Err(ApiError::digest_invalid(format!(
            "the manifest's digest is {digest}, not {r} as the URL says"
        )));
    }
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", format!("not JSON: {e}")))?;
    let subject = doc
        .get("subject")
        .and_then(|s| s.get("digest"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let home = reg.home.clone();
    let (repo2, digest2) = (repo.clone(), digest.clone());
    blocking(move || {
        let ct = content_type.as_deref().filter(|c| *c != "application/octet-stream");
        let name = format!("{repo2}@{digest2}");
        home.commit_image(&bytes, ct, Some(&name)).map_err(core_err)?;
        if !by_digest {
            home.commit_image(&bytes, ct, Some(&format!("{repo2}:{r}")))
                .map_err(core_err)?;
        }
        Ok(())
    })
    .await?;
    tracing::info!(repo = %repo, digest = %digest, "manifest pushed");
    let mut res = Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{repo}/manifests/{digest}"))
        .header(DIGEST_HEADER, &digest)
        .header(header::CONTENT_LENGTH, 0);
    if let Some(s) = subject {
        res = res.header("oci-subject", s);
    }
    res.body(Body::empty()).map_err(ApiError::internal)
}

async fn delete_manifest(reg: &Arc<Registry>, repo: String, r: String) -> ApiResult {
    let home = reg.home.clone();
    blocking(move || {
        let names = repo_names(&home, &repo)?;
        let mut gone = Vec::new();
        if is_digest(&r) {
            for n in &names {
                let hit = match n.rest.strip_prefix('@') {
                    Some(d) => d == r,
                    None => {
                        let cid: Cid = n.root.parse().map_err(core_err)?;
                        find_in_image(&home, &cid, None)?.is_some_and(|f| f.digest == r)
                    }
                };
                if hit {
                    gone.push(n.stored.clone());
                }
            }
        } else {
            let tag = format!(":{r}");
            gone.extend(names.iter().filter(|n| n.rest == tag).map(|n| n.stored.clone()));
        }
        if gone.is_empty() {
            return Err(ApiError::manifest_unknown(&repo, &r));
        }
        for n in gone {
            home.remove(&n).map_err(core_err)?;
        }
        Ok(())
    })
    .await?;
    Ok(empty(StatusCode::ACCEPTED))
}

async fn referrers(reg: &Arc<Registry>, repo: String, d: String, artifact_type: Option<String>) -> ApiResult {
    if !is_digest(&d) {
        return Err(ApiError::digest_invalid(format!("{d:?} is not a sha256 digest")));
    }
    let home = reg.home.clone();
    let filter = artifact_type.clone();
    let list = blocking(move || {
        let mut out = Vec::new();
        for n in repo_names(&home, &repo)? {
            if !n.rest.starts_with('@') {
                continue;
            }
            let cid: Cid = n.root.parse().map_err(core_err)?;
            let Some(f) = find_in_image(&home, &cid, None)? else {
                continue;
            };
            let Ok(doc) = serde_json::from_slice::<Value>(&f.bytes) else {
                continue;
            };
            if doc.pointer("/subject/digest").and_then(Value::as_str) != Some(d.as_str()) {
                continue;
            }
            let at = doc
                .get("artifactType")
                .or_else(|| doc.pointer("/config/mediaType"))
                .and_then(Value::as_str)
                .map(str::to_string);
            if filter.as_ref().is_some_and(|want| at.as_ref() != Some(want)) {
                continue;
            }
            let mut desc = json!({ "mediaType": f.media_type, "digest": f.digest, "size": f.bytes.len() });
            if let Some(at) = at {
                desc["artifactType"] = json!(at);
            }
            if let Some(a) = doc.get("annotations") {
                desc["annotations"] = a.clone();
            }
            out.push(desc);
        }
        Ok(out)
    })
    .await?;
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list });
    let mut res = json_response(StatusCode::OK, &index, Some(OCI_INDEX));
    if artifact_type.is_some() {
        res.headers_mut()
            .insert("oci-filters-applied", HeaderValue::from_static("artifactType"));
    }
    Ok(res)
}

// ---------------------------------------------------------------------------------------------
// Blobs

/// Finds a blob: in the image for `ipfs/<cid>`, else anywhere in the home.
fn find_blob(home: &Home, repo: &str, d: &str) -> Result<BlobNode, ApiError> {
    if let Some(cid) = paths::ipfs_root(repo) {
        let img = ImageRoot::load(home.store(), &cid).map_err(|_| ApiError::blob_unknown(d))?;
        let blobs = img.blobs(home.store()).map_err(core_err)?;
        return blobs
            .into_iter()
            .find(|b| b.node.digest_str() == d)
            .map(|b| b.node)
            .ok_or_else(|| ApiError::blob_unknown(d));
    }
    match home.blob(d) {
        Ok(n) => Ok(n),
        Err(Error::ImageNotFound(_) | Error::BlobNotFound(_)) => Err(ApiError::blob_unknown(d)),
        Err(e) => Err(core_err(e)),
    }
}

/// A `Range: bytes=…` header against a blob of `size` bytes: `Ok(None)` for the whole blob.
fn parse_range(h: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(h) = h else { return Ok(None) };
    let bad = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "RANGE_INVALID",
            format!("range {h:?} is not satisfiable for a blob of {size} bytes"),
        )
        .header(header::CONTENT_RANGE, format!("bytes */{size}"))
    };
    let spec = h.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    if spec.contains(',') {
        return Err(bad());
    }
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
    let (start, end) = if a.is_empty() {
        let n = num(b)?;
        if n == 0 || size == 0 {
            return Err(bad());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start = num(a)?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            num(b)?.min(size.saturating_sub(1))
        };
        (start, end)
    };
    if start >= size || end < start {
        return Err(bad());
    }
    Ok(Some((start, end)))
}

/// Streams `len` bytes of a blob from `start` off a blocking thread, through a small channel.
/// A response that runs to the blob's end is held back by one chunk until the blob's sha256 has
/// been checked, so a corrupt store aborts it instead of ending it normally. Concurrent requests
/// for a cold recipe layer share one rebuild (see `shp_core::cache`).
pub fn stream_blob(home: Arc<Home>, node: BlobNode, start: u64, len: u64) -> Body {
    let to_end = start + len == node.size;
    let digest = node.digest_str();
    stream_reader(move || home.blob_reader_at(&node, start), len, to_end, digest)
}

/// Streams `len` bytes of what `open` gives (a blob `digest` from some offset, verified at its
/// end) off a blocking thread; `to_end`: the bytes run to the blob's end, so the last chunk waits
/// for the verdict.
fn stream_reader(
    open: impl FnOnce() -> Box<dyn Read + Send> + Send + 'static,
    len: u64,
    to_end: bool,
    digest: String,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut r = open();
        let res = (|| -> std::io::Result<()> {
            let mut left = len;
            let mut pending: Option<Bytes> = None;
            let mut buf = vec![0u8; CHUNK];
            while left > 0 {
                let want = (left as usize).min(CHUNK);
                let n = r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "blob ended early",
                    ));
                }
                left -= n as u64;
                if let Some(p) = pending.replace(Bytes::copy_from_slice(&buf[..n])) {
                    if tx.blocking_send(Ok(p)).is_err() {
                        return Ok(()); // the client went away
                    }
                }
            }
            if to_end {
                // Reading past the end waits for the sha256 check.
                let mut one = [0u8; 1];
                if r.read(&mut one)? != 0 {
                    return Err(std::io::Error::other("blob is longer than its node says"));
                }
            }
            if let Some(p) = pending {
                let _ = tx.blocking_send(Ok(p));
            }
            Ok(())
        })();
        if let Err(e) = res {
            let e = shp_core::dag::unwrap_io(e);
            tracing::error!(%digest, "serving blob failed: {e}");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    Body::from_stream(stream)
}

async fn get_blob(reg: &Arc<Registry>, repo: String, d: String, h: &HeaderMap, head: bool) -> ApiResult {
    if !is_digest(&d) {
        return Err(ApiError::digest_invalid(format!("{d:?} is not a sha256 digest")));
    }
    let home = reg.home.clone();
    let d2 = d.clone();
    let node = blocking(move || find_blob(&home, &repo, &d2)).await?;
    let home = reg.home.clone();
    let size = node.size;
    blob_response(&d, size, h, head, move |start, len| stream_blob(home, node, start, len))
}

/// The answer to a blob GET or HEAD (with `Range` support); `body(start, len)` streams the bytes.
fn blob_response(d: &str, size: u64, h: &HeaderMap, head: bool, body: impl FnOnce(u64, u64) -> Body) -> ApiResult {
    let range = parse_range(h.get(header::RANGE).and_then(|v| v.to_str().ok()), size)?;
    let (status, start, end) = match range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e),
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    let mut res = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(DIGEST_HEADER, d)
        .header(header::ETAG, format!("\"{d}\""));
    if range.is_some() {
        res = res.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
    }
    let body = if head || len == 0 {
        Body::empty()
    } else {
        body(start, len)
    };
    res.body(body).map_err(ApiError::internal)
}

async fn delete_blob(reg: &Arc<Registry>, d: String) -> ApiResult {
    if !is_digest(&d) {
        return Err(ApiError::digest_invalid(format!("{d:?} is not a sha256 digest")));
    }
    let home = reg.home.clone();
    blocking(move || {
        let refs = home.refs().map_err(core_err)?;
        if refs.blobs.contains_key(&d) {
            home.remove(&d).map_err(core_err)?;
            // Still reachable through an image: say so rather than pretend it is gone.
            return match home.blob(&d) {
                Ok(_) => Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "UNSUPPORTED",
                    format!("blob {d} is part of stored manifests: delete them first"),
                )),
                Err(_) => Ok(()),
            };
        }
        match home.blob(&d) {
            Ok(_) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                format!("blob {d} is part of stored manifests: delete them first"),
            )),
            Err(_) => Err(ApiError::blob_unknown(&d)),
        }
    })
    .await?;
    Ok(empty(StatusCode::ACCEPTED))
}

// ---------------------------------------------------------------------------------------------
// Uploads

fn upload_location(repo: &str, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

fn upload_response(status: StatusCode, repo: &str, id: &str, size: u64) -> Response {
    Response::builder()
        .status(status)
        .header(header::LOCATION, upload_location(repo, id))
        .header(header::RANGE, format!("0-{}", size.max(1) - 1))
        .header("docker-upload-uuid", id)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("response")
}

fn blob_created(repo: &str, d: &str) -> Response {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{repo}/blobs/{d}"))
        .header(DIGEST_HEADER, d)
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("response")
}

fn content_length(h: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match h.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "SIZE_INVALID", "malformed Content-Length")),
    }
}

async fn start_upload(
    reg: &Arc<Registry>,
    repo: String,
    digest: Option<String>,
    mount: Option<String>,
    from: Option<String>,
    req: Request,
) -> ApiResult {
    if let Some(m) = mount {
        if !is_digest(&m) {
            return Err(ApiError::digest_invalid(format!("mount={m:?} is not a sha256 digest")));
        }
        if let Some(f) = &from {
            paths::check_repo(f)?;
        }
        let home = reg.home.clone();
        let from_repo = from.unwrap_or_default();
        let m2 = m.clone();
        let found = blocking(move || {
            let src = if paths::ipfs_root(&from_repo).is_some() {
                from_repo.as_str()
            } else {
                ""
            };
            Ok(find_blob(&home, src, &m2).ok())
        })
        .await?;
        if found.is_some() {
            tracing::info!(repo = %repo, digest = %m, "blob mounted");
            return Ok(blob_created(&repo, &m));
        }
        // Not here: an upload session instead, as the spec says.
    }
    if let Some(d) = digest {
        if !is_digest(&d) {
            return Err(ApiError::digest_invalid(format!("digest={d:?} is not a sha256 digest")));
        }
        let len = content_length(req.headers())?;
        let id = reg.uploads.create(&repo)?;
        let res: Result<(), ApiError> = async {
            reg.uploads.append(&repo, &id, None, len, req.into_body()).await?;
            reg.uploads.finish(&reg.home, &repo, &id, &d).await
        }
        .await;
        if res.is_err() {
            let _ = reg.uploads.cancel(&repo, &id);
        }
        res?;
        return Ok(blob_created(&repo, &d));
    }
    let id = reg.uploads.create(&repo)?;
    Ok(upload_response(StatusCode::ACCEPTED, &repo, &id, 0))
}

async fn patch_upload(reg: &Arc<Registry>, repo: String, id: String, req: Request) -> ApiResult {
    let range = req
        .headers()
        .get(header::CONTENT_RANGE)
        .map(|v| uploads::parse_content_range(v.to_str().unwrap_or("")))
        .transpose()?;
    let len = content_length(req.headers())?;
    let size = reg.uploads.append(&repo, &id, range, len, req.into_body()).await?;
    Ok(upload_response(StatusCode::ACCEPTED, &repo, &id, size))
}

async fn put_upload(reg: &Arc<Registry>, repo: String, id: String, digest: Option<String>, req: Request) -> ApiResult {
    let Some(d) = digest else {
        return Err(ApiError::digest_invalid("PUT of an upload needs ?digest=sha256:…"));
    };
    if !is_digest(&d) {
        return Err(ApiError::digest_invalid(format!("digest={d:?} is not a sha256 digest")));
    }
    let range = req
        .headers()
        .get(header::CONTENT_RANGE)
        .map(|v| uploads::parse_content_range(v.to_str().unwrap_or("")))
        .transpose()?;
    let len = content_length(req.headers())?;
    reg.uploads.append(&repo, &id, range, len, req.into_body()).await?;
    reg.uploads.finish(&reg.home, &repo, &id, &d).await?;
    Ok(blob_created(&repo, &d))
}

fn upload_status(reg: &Arc<Registry>, repo: String, id: String) -> ApiResult {
    let size = reg.uploads.size(&repo, &id)?;
    Ok(upload_response(StatusCode::NO_CONTENT, &repo, &id, size))
}
