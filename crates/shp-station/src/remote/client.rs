//! The HTTP side of the OCI Distribution API: one registry, one repository.
//!
//! reqwest (async, rustls with the ring provider) runs on a small tokio runtime this client owns.
//! Callers are synchronous threads (the CLI, or `spawn_blocking` in a server): every request is
//! spawned onto the runtime and awaited through a channel, so no executor thread ever blocks on
//! the store and the client works whether or not the caller is inside another runtime. Bodies
//! stream both ways through bounded channels (a few 256 KiB pieces in flight): memory does not
//! grow with blob size.

use super::auth::{Challenge, Credentials};
use super::{Error, RemoteOptions, RemoteRef};
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use std::io::{self, Read};
use std::sync::Mutex;

/// Every manifest type shp can import, for `Accept`.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

const PIECE: usize = 256 * 1024;
const IN_FLIGHT: usize = 8;

/// A client for one repository of one registry.
pub struct Client {
    rt: OwnRuntime,
    http: reqwest::Client,
    /// `https://host` or `http://host`.
    base: Url,
    pub(crate) repo: String,
    creds: Option<Credentials>,
    /// Actions tokens are asked for (`pull` or `pull,push`).
    actions: &'static str,
    /// The `Authorization` value in use, once a challenge was answered.
    auth: Mutex<Option<String>>,
    what: String,
    /// Sent with every request (see [`Client::with_header`]).
    extra: HeaderMap,
}

/// A manifest's bytes, its media type and the value of one more response header (if sent).
pub type ManifestWith = (Vec<u8>, String, Option<String>);

/// What starting a blob upload gave.
pub enum Upload {
    /// The registry mounted the blob from another repository: nothing to send.
    Mounted,
    /// An upload session at this URL.
    Session(Url),
}

/// The client's runtime, shut down without waiting when the client goes: a client may be dropped
/// anywhere, a server's async context included (where a blocking shutdown panics).
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for OwnRuntime {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("present until drop")
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn install_crypto() {
    // reqwest is built without a default provider: ring is ours. Ignore "already installed".
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Client {
    /// Connects to the registry `r` names and checks it speaks `/v2/`, answering its auth
    /// challenge if any. `push` asks tokens for `pull,push` instead of `pull`.
    pub fn connect(r: &RemoteRef, opts: &RemoteOptions, push: bool) -> Result<Client, Error> {
        let host = r.api_host();
        let base = Url::parse(&format!("https://{host}")).map_err(|e| Error::InvalidReference {
            reference: r.to_string(),
            reason: format!("registry {host:?}: {e}"),
        })?;
        let mut c = Client::new(base, &r.registry, &r.repository, opts, push)?;
        match c.ping() {
            Err(Error::Http { source, .. }) if !opts.tls_verify && (source.is_connect() || source.is_request()) => {
                // --tls-verify=false: a registry that does not speak TLS is asked over plain http.
                c.base = Url::parse(&format!("http://{host}")).expect("valid: the https form parsed");
                c.ping()?;
            }
            res => res?,
        }
        Ok(c)
    }

    /// Connects to repository `repo` of the registry served at `base` (`http://…` or
    /// `https://…`, as given: no fallback), which users call `registry` (for auth files and
    /// messages); pull only.
    pub fn connect_url(base: Url, registry: &str, repo: &str, opts: &RemoteOptions) -> Result<Client, Error> {
        let c = Client::new(base, registry, repo, opts, false)?;
        c.ping()?;
        Ok(c)
    }

    fn new(base: Url, registry: &str, repo: &str, opts: &RemoteOptions, push: bool) -> Result<Client, Error> {
        install_crypto();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("shp-remote")
            .enable_all()
            .build()
            .map_err(|e| Error::Io {
                what: "start the HTTP runtime".into(),
                source: e,
            })?;
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("shp/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.read_timeout);
        if !opts.tls_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b.build().map_err(|e| Error::Http {
            what: "build the HTTP client".into(),
            source: e,
        })?;
        let creds = match &opts.creds {
            Some(c) => Some(c.clone()),
            None => match &opts.authfile {
                Some(f) => Credentials::from_authfile(f, registry)?,
                None => None,
            },
        };
        Ok(Client {
            rt: OwnRuntime(Some(rt)),
            http,
            base,
            repo: repo.to_string(),
            creds,
            actions: if push { "pull,push" } else { "pull" },
            auth: Mutex::new(None),
            what: format!("{registry}/{repo}"),
            extra: HeaderMap::new(),
        })
    }

    /// Sends `name: value` with every request.
    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Client {
        self.extra.insert(name, HeaderValue::from_static(value));
        self
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("registry paths are valid URLs")
    }

    /// Runs a future on the client's runtime and waits for it on the calling thread.
    fn run<T: Send + 'static>(&self, f: impl std::future::Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().expect("the runtime runs every spawned request to completion")
    }

    fn http_err(&self, what: String) -> impl FnOnce(reqwest::Error) -> Error {
        move |source| Error::Http { what, source }
    }

    /// Sends a request without a body (or with a small, replayable one), answering one auth
    /// challenge with a retry.
    fn send(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, Error> {
        let what = format!("{method} {url}");
        for attempt in 0..2 {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .headers(self.extra.clone())
                .headers(headers.clone());
            if let Some(a) = self.auth.lock().expect("auth lock").clone() {
                req = req.header(AUTHORIZATION, a);
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let resp = self
                .run(async move { req.send().await })
                .map_err(self.http_err(what.clone()))?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.answer(&resp, &what)?;
                continue;
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Answers a 401: Basic with the credentials, or a Bearer token from the realm.
    fn answer(&self, resp: &reqwest::Response, what: &str) -> Result<(), Error> {
        let header = resp
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(Challenge::parse);
        let unauthorized = |why: &str| Error::Unauthorized {
            what: what.to_string(),
            reason: why.to_string(),
        };
        match header {
            None => Err(unauthorized("401 without a Basic or Bearer challenge")),
            Some(Challenge::Basic) => {
                let c = self.creds.as_ref().ok_or_else(|| {
                    unauthorized("the registry wants credentials: give --creds USER:PASS or --authfile FILE")
                })?;
                *self.auth.lock().expect("auth lock") = Some(c.basic_header());
                Ok(())
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                let mut url = Url::parse(&realm).map_err(|e| unauthorized(&format!("token realm {realm:?}: {e}")))?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", &format!("repository:{}:{}", self.repo, self.actions));
                }
                let mut req = self.http.get(url.clone());
                if let Some(c) = &self.creds {
                    req = req.header(AUTHORIZATION, c.basic_header());
                }
                let twhat = format!("GET {url} (token)");
                let resp = self
                    .run(async move { req.send().await })
                    .map_err(self.http_err(twhat.clone()))?;
                let status = resp.status();
                let body = self.read_small(resp, 1 << 20, &twhat)?;
                if !status.is_success() {
                    return Err(unauthorized(&format!(
                        "the token service answered {status}: {}",
                        String::from_utf8_lossy(&body).trim()
                    )));
                }
                let json: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| unauthorized(&format!("the token service's answer is not JSON: {e}")))?;
                let token = ["token", "access_token"]
                    .iter()
                    .find_map(|k| json.get(k).and_then(|t| t.as_str()).filter(|t| !t.is_empty()))
                    .ok_or_else(|| unauthorized("the token service's answer has no token"))?;
                *self.auth.lock().expect("auth lock") = Some(format!("Bearer {token}"));
                Ok(())
            }
        }
    }

    /// Reads a whole (small) response body, refusing more than `limit` bytes.
    fn read_small(&self, mut resp: reqwest::Response, limit: u64, what: &str) -> Result<Vec<u8>, Error> {
        let what = what.to_string();
        self.run(async move {
            let mut out = Vec::new();
            while let Some(c) = resp.chunk().await.map_err(|e| Error::Http {
                what: what.clone(),
                source: e,
            })? {
                out.extend_from_slice(&c);
                if out.len() as u64 > limit {
                    return Err(Error::Registry {
                        what,
                        reason: format!("response body over {limit} bytes"),
                    });
                }
            }
            Ok(out)
        })
    }

    /// Turns an unexpected status into an error carrying the registry's error codes.
    fn status_err(&self, resp: reqwest::Response, what: &str) -> Error {
        let status = resp.status();
        let body = self.read_small(resp, 64 * 1024, what).unwrap_or_default();
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|j| {
                let errs = j.get("errors")?.as_array()?;
                Some(
                    errs.iter()
                        .map(|e| {
                            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("?");
                            let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                            format!("{code}: {msg}")
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().chars().take(300).collect());
        let reason = if detail.is_empty() {
            format!("{status}")
        } else {
            format!("{status} ({detail})")
        };
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Error::Unauthorized {
                what: what.to_string(),
                reason,
            };
        }
        Error::Registry {
            what: what.to_string(),
            reason,
        }
    }

    fn ping(&self) -> Result<(), Error> {
        let url = self.url("/v2/");
        let what = format!("GET {url}");
        let resp = self.send(Method::GET, url, HeaderMap::new(), None)?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(self.status_err(
            resp,
            &format!("{what}: not an OCI distribution registry, or access refused"),
        ))
    }

    /// Asks for a manifest with every type shp reads in `Accept`: the response when the registry
    /// has it (`Ok(None)` for a 404), and what was asked (for messages).
    fn manifest_request(&self, method: Method, reference: &str) -> Result<Option<(reqwest::Response, String)>, Error> {
        let url = self.url(&format!("/v2/{}/manifests/{reference}", self.repo));
        let what = format!("{method} {url}");
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let resp = self.send(method, url, h, None)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.status_err(resp, &what));
        }
        Ok(Some((resp, what)))
    }

    /// A response header's value without parameters (`a/b; charset=x` → `a/b`).
    fn header_value(resp: &reqwest::Response, name: &str) -> Option<String> {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
    }

    /// A manifest by tag or digest: its bytes and the media type the registry gives it.
    /// `Ok(None)` when the registry has no such manifest.
    pub fn get_manifest(&self, reference: &str) -> Result<Option<(Vec<u8>, String)>, Error> {
        Ok(self.get_manifest_with(reference, "")?.map(|(b, mt, _)| (b, mt)))
    }

    /// [`Client::get_manifest`], plus the value of the response header `header` if any.
    pub fn get_manifest_with(&self, reference: &str, header: &str) -> Result<Option<ManifestWith>, Error> {
        let Some((resp, what)) = self.manifest_request(Method::GET, reference)? else {
            return Ok(None);
        };
        let mt = Self::header_value(&resp, CONTENT_TYPE.as_str()).unwrap_or_default();
        let extra = if header.is_empty() {
            None
        } else {
            Self::header_value(&resp, header)
        };
        let bytes = self.read_small(resp, shp_core::oci::MAX_MANIFEST, &what)?;
        Ok(Some((bytes, mt, extra)))
    }

    /// What a registry says of a manifest without sending it: its digest (the
    /// `Docker-Content-Digest` header, when given) and media type. `Ok(None)` when it has none.
    pub fn head_manifest(&self, reference: &str) -> Result<Option<(Option<String>, String)>, Error> {
        let Some((resp, _)) = self.manifest_request(Method::HEAD, reference)? else {
            return Ok(None);
        };
        Ok(Some((
            Self::header_value(&resp, "docker-content-digest"),
            Self::header_value(&resp, CONTENT_TYPE.as_str()).unwrap_or_default(),
        )))
    }

    /// The size of a blob the repository holds (`expected` when the registry does not say), None
    /// if it has none.
    pub fn head_blob(&self, digest: &str, expected: u64) -> Result<Option<u64>, Error> {
        let url = self.url(&format!("/v2/{}/blobs/{digest}", self.repo));
        let what = format!("HEAD {url}");
        let resp = self.send(Method::HEAD, url, HeaderMap::new(), None)?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(
                resp.headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(expected),
            )),
            _ => Err(self.status_err(resp, &what)),
        }
    }

    /// A blob's bytes as a stream (redirects to storage are followed; the caller verifies).
    pub fn get_blob(&self, digest: &str) -> Result<BodyReader, Error> {
        let url = self.url(&format!("/v2/{}/blobs/{digest}", self.repo));
        let what = format!("GET {url}");
        let resp = self.send(Method::GET, url, HeaderMap::new(), None)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::NotFound(format!("blob {digest} in {}", self.what)));
        }
        if !resp.status().is_success() {
            return Err(self.status_err(resp, &what));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Option<Bytes>>>(IN_FLIGHT);
        let w = what.clone();
        self.rt.spawn(async move {
            let mut resp = resp;
            loop {
                let item = match resp.chunk().await {
                    Ok(c) => Ok(c),
                    Err(e) => Err(io::Error::other(format!("{w}: {e}"))),
                };
                let stop = !matches!(item, Ok(Some(_)));
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(BodyReader {
            rx,
            cur: Bytes::new(),
            ended: false,
            what,
        })
    }

    /// Starts a blob upload: a cross-repository mount when `mount_from` names a repository of
    /// this registry that has the blob, else (or when the registry declines) a plain session.
    pub fn start_upload(&self, digest: &str, mount_from: Option<&str>) -> Result<Upload, Error> {
        let mut url = self.url(&format!("/v2/{}/blobs/uploads/", self.repo));
        if let Some(from) = mount_from {
            url.query_pairs_mut()
                .append_pair("mount", digest)
                .append_pair("from", from);
        }
        let what = format!("POST {url}");
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let resp = self.send(Method::POST, url, h, Some(Bytes::new()))?;
        match resp.status() {
            StatusCode::CREATED if mount_from.is_some() => Ok(Upload::Mounted),
            StatusCode::ACCEPTED => Ok(Upload::Session(self.location(&resp, &what)?)),
            _ => Err(self.status_err(resp, &what)),
        }
    }

    fn location(&self, resp: &reqwest::Response, what: &str) -> Result<Url, Error> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Registry {
                what: what.to_string(),
                reason: "no Location header for the upload session".into(),
            })?;
        resp.url().join(loc).map_err(|e| Error::Registry {
            what: what.to_string(),
            reason: format!("bad Location {loc:?}: {e}"),
        })
    }

    /// Sends `len` bytes of `r` as one request body, streaming. The last piece is held back until
    /// `r` has reported its end cleanly (shp's blob readers verify the digest there), so a blob
    /// that fails verification is never sent whole. With `to_eof` false, `r` may go on past `len`.
    fn stream(
        &self,
        method: Method,
        url: Url,
        mut headers: HeaderMap,
        len: u64,
        r: &mut dyn Read,
        to_eof: bool,
    ) -> Result<reqwest::Response, Error> {
        let what = format!("{method} {url}");
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(IN_FLIGHT);
        let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        let mut req = self.http.request(method, url).headers(headers).body(body);
        if let Some(a) = self.auth.lock().expect("auth lock").clone() {
            req = req.header(AUTHORIZATION, a);
        }
        let (rtx, rrx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let _ = rtx.send(req.send().await);
        });
        let fed = feed(&tx, r, len, to_eof);
        if let Err(e) = &fed {
            // Abort the request: the registry must not receive a complete body.
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
        drop(tx);
        let resp = rrx
            .recv()
            .expect("the runtime runs every spawned request to completion");
        fed.map_err(|e| Error::Source {
            what: what.clone(),
            source: shp_core::dag::unwrap_io(e),
        })?;
        resp.map_err(self.http_err(what))
    }

    /// Uploads a whole blob in one PUT to the session (monolithic).
    pub fn put_blob(&self, session: Url, digest: &str, len: u64, r: &mut dyn Read) -> Result<(), Error> {
        let mut url = session;
        url.query_pairs_mut().append_pair("digest", digest);
        let what = format!("PUT {url}");
        let resp = self.stream(Method::PUT, url, HeaderMap::new(), len, r, true)?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.status_err(resp, &what));
        }
        Ok(())
    }

    /// Uploads a blob in PATCH chunks of `chunk` bytes, then closes the session with a PUT.
    pub fn put_blob_chunked(
        &self,
        session: Url,
        digest: &str,
        len: u64,
        chunk: u64,
        r: &mut dyn Read,
    ) -> Result<u64, Error> {
        let mut url = session;
        let mut off = 0;
        let mut chunks = 0;
        while off < len {
            let n = chunk.min(len - off);
            let mut h = HeaderMap::new();
            h.insert(
                reqwest::header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("{off}-{}", off + n - 1)).expect("ascii"),
            );
            let what = format!("PATCH {url}");
            let last = off + n == len;
            let resp = self.stream(Method::PATCH, url.clone(), h, n, r, last)?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(self.status_err(resp, &what));
            }
            url = self.location(&resp, &what)?;
            off += n;
            chunks += 1;
        }
        url.query_pairs_mut().append_pair("digest", digest);
        let what = format!("PUT {url}");
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let resp = self.send(Method::PUT, url, h, Some(Bytes::new()))?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.status_err(resp, &what));
        }
        Ok(chunks)
    }

    /// Puts a manifest under a tag or its digest. Returns the digest the registry reports.
    pub fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<Option<String>, Error> {
        let url = self.url(&format!("/v2/{}/manifests/{reference}", self.repo));
        let what = format!("PUT {url}");
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|_| Error::Registry {
                what: what.clone(),
                reason: format!("media type {media_type:?} is not a valid header value"),
            })?,
        );
        let resp = self.send(Method::PUT, url, h, Some(Bytes::copy_from_slice(bytes)))?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.status_err(resp, &what));
        }
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }
}

/// Copies `len` bytes of `r` into the body channel, holding the last piece back until `r` ends
/// cleanly (when `to_eof`). Stops early (Ok) if the request side went away.
fn feed(tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>, r: &mut dyn Read, len: u64, to_eof: bool) -> io::Result<()> {
    let mut sent = 0u64;
    let mut held: Option<Bytes> = None;
    let mut buf = vec![0u8; PIECE];
    while sent < len {
        let want = (len - sent).min(PIECE as u64) as usize;
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the blob ended after {sent} of {len} bytes"),
            ));
        }
        sent += n as u64;
        if let Some(p) = held.replace(Bytes::copy_from_slice(&buf[..n])) {
            if tx.blocking_send(Ok(p)).is_err() {
                return Ok(());
            }
        }
    }
    if to_eof {
        let mut extra = [0u8; 1];
        if r.read(&mut extra)? != 0 {
            return Err(io::Error::other(format!("the blob is longer than {len} bytes")));
        }
    }
    if let Some(p) = held {
        let _ = tx.blocking_send(Ok(p));
    }
    Ok(())
}

/// A response body as a blocking reader, fed by a task on the client's runtime.
pub struct BodyReader {
    /// Chunks, then `Ok(None)` at the body's real end.
    rx: tokio::sync::mpsc::Receiver<io::Result<Option<Bytes>>>,
    cur: Bytes,
    ended: bool,
    what: String,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(Some(c))) => self.cur = c,
                Some(Ok(None)) => self.ended = true,
                Some(Err(e)) => return Err(e),
                // The task went without saying the body ended: the client was dropped under it.
                None => {
                    return Err(io::Error::other(format!(
                        "{}: the connection closed before the body ended",
                        self.what
                    )))
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}
