//! The bucket: where a home's S3 store lives, how it is reached, and every request made to it.
//!
//! One `object_store` client on a small private tokio runtime; the store's synchronous callers
//! hand it futures and wait on a channel, so any thread (a station's async workers included) may
//! call in. Every request is retried with exponential backoff on transient failures (connection
//! errors, 5xx, timeouts) — puts too: shp's object keys never change meaning, so repeating one is
//! safe — and counted, so `shp stats` can say what a command cost.

use crate::error::{Error, Result};
pub use crate::store::RequestStats;
use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjPath;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where the store is: `s3://BUCKET/PREFIX` plus options (`--store-opt KEY=VALUE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    pub opts: BTreeMap<String, String>,
}

/// The option keys `--store-opt` accepts.
pub const OPTION_KEYS: &[&str] = &[
    "endpoint",
    "region",
    "profile",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "allow_http",
    "virtual_hosted",
    "pack_size",
    "cache_size",
    "grace",
];

impl S3Location {
    /// Parses `s3://BUCKET[/PREFIX]`.
    pub fn parse(url: &str) -> Result<S3Location> {
        let bad = |r: &str| Error::Store(format!("store {url:?}: {r} (expected s3://BUCKET/PREFIX)"));
        let rest = url.strip_prefix("s3://").ok_or_else(|| bad("not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !bucket_ok {
            return Err(bad("bucket names are 3-63 characters of a-z, 0-9, '-' and '.'"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|p| p.is_empty() && !prefix.is_empty() || p == "." || p == "..")
        {
            return Err(bad("the prefix has an empty, '.' or '..' segment"));
        }
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            opts: BTreeMap::new(),
        })
    }

    /// Adds `KEY=VALUE` options, refusing unknown keys.
    pub fn with_opts(mut self, opts: &[(String, String)]) -> Result<S3Location> {
        for (k, v) in opts {
            if !OPTION_KEYS.contains(&k.as_str()) {
                return Err(Error::Store(format!(
                    "unknown store option {k:?} (known: {})",
                    OPTION_KEYS.join(", ")
                )));
            }
            self.opts.insert(k.clone(), v.clone());
        }
        Ok(self)
    }

    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    pub(crate) fn opt_bytes(&self, key: &str, default: u64) -> Result<u64> {
        match self.opts.get(key) {
            None => Ok(default),
            Some(v) => parse_size(v).ok_or_else(|| {
                Error::Store(format!(
                    "store option {key}={v:?}: expected bytes, e.g. 16777216, 16MiB, 1GiB"
                ))
            }),
        }
    }

    pub(crate) fn opt_duration(&self, key: &str, default: Duration) -> Result<Duration> {
        match self.opts.get(key) {
            None => Ok(default),
            Some(v) => parse_duration(v).ok_or_else(|| {
                Error::Store(format!(
                    "store option {key}={v:?}: expected a duration, e.g. 3600, 90s, 30m, 1h"
                ))
            }),
        }
    }
}

pub(crate) fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mul = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mul)
}

pub(crate) fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mul = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(mul)?))
}

/// Requests made to the bucket by this process.
#[derive(Debug, Default)]
pub struct Counters {
    pub get: AtomicU64,
    pub put: AtomicU64,
    pub list: AtomicU64,
    pub head: AtomicU64,
    pub delete: AtomicU64,
    pub retries: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> RequestStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestStats {
            get: l(&self.get),
            put: l(&self.put),
            list: l(&self.list),
            head: l(&self.head),
            delete: l(&self.delete),
            retries: l(&self.retries),
            bytes_in: l(&self.bytes_in),
            bytes_out: l(&self.bytes_out),
        }
    }
}

/// A tokio runtime that is shut down without blocking when dropped (a home may be dropped on an
/// async worker of the station's own runtime).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// How an object was written: its entity tag, for a conditional update.
pub type ETag = Option<String>;

/// What a conditional put ran into.
pub enum PutOutcome {
    Written,
    /// The object changed (or appeared) since it was read.
    Conflict,
}

/// The bucket client.
pub struct Bucket {
    rt: Runtime,
    os: Arc<AmazonS3>,
    loc: S3Location,
    counters: Arc<Counters>,
    creds: Credentials,
}

#[derive(Clone)]
struct Credentials {
    endpoint: Option<String>,
    region: String,
    key: Option<String>,
    secret: Option<String>,
    token: Option<String>,
    allow_http: bool,
    virtual_hosted: bool,
}

const ATTEMPTS: u32 = 6;

impl Bucket {
    /// Connects (lazily: nothing is sent until the first request).
    pub fn new(loc: &S3Location) -> Result<Bucket> {
        let creds = Credentials::resolve(loc)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("shp-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::Store(format!("{}: starting the S3 client: {e}", loc.url())))?;
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&loc.bucket)
            .with_region(&creds.region)
            .with_allow_http(creds.allow_http)
            .with_virtual_hosted_style_request(creds.virtual_hosted)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(30),
                ..Default::default()
            });
        if let Some(e) = &creds.endpoint {
            b = b.with_endpoint(e);
        }
        if let (Some(k), Some(s)) = (&creds.key, &creds.secret) {
            b = b.with_access_key_id(k).with_secret_access_key(s);
        } else {
            // No keys: anonymous requests (a public bucket); the bucket says if that is not enough.
            b = b.with_skip_signature(true);
        }
        if let Some(t) = &creds.token {
            b = b.with_token(t);
        }
        let os = b
            .build()
            .map_err(|e| Error::Store(format!("{}: S3 client configuration: {e}", loc.url())))?;
        Ok(Bucket {
            rt: Runtime(Some(rt)),
            os: Arc::new(os),
            loc: loc.clone(),
            counters: Arc::new(Counters::default()),
            creds,
        })
    }

    pub fn url(&self) -> String {
        self.loc.url()
    }

    pub fn location(&self) -> &S3Location {
        &self.loc
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The object key of `rel` under the prefix.
    pub fn key(&self, rel: &str) -> ObjPath {
        if self.loc.prefix.is_empty() {
            ObjPath::from(rel)
        } else {
            ObjPath::from(format!("{}/{rel}", self.loc.prefix))
        }
    }

    /// `rel` of an object key under the prefix.
    pub fn rel<'a>(&self, key: &'a ObjPath) -> &'a str {
        let k = key.as_ref();
        if self.loc.prefix.is_empty() {
            k
        } else {
            k.strip_prefix(&self.loc.prefix)
                .and_then(|k| k.strip_prefix('/'))
                .unwrap_or(k)
        }
    }

    /// Runs a future on the client's runtime and waits for it.
    pub fn block<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().expect("the S3 runtime runs while the store is open")
    }

    /// Starts a future on the client's runtime.
    pub fn spawn<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.rt.0.as_ref().expect("runtime present").spawn(f);
    }

    /// A handle for requests made from tasks on the runtime.
    pub fn client(&self) -> Client {
        Client {
            os: self.os.clone(),
            counters: self.counters.clone(),
        }
    }

    /// Makes sure the bucket exists: creates it when it is absent (and the credentials allow it).
    pub fn ensure_exists(&self) -> Result<()> {
        let c = self.client();
        let probe = self.key("refs.json");
        let first = self.block(async move { c.list(&probe).await });
        match first {
            Ok(_) => Ok(()),
            Err(e) if e.contains("NoSuchBucket") => self.create_bucket(),
            Err(e) => Err(self.fail("LIST", "the bucket", &e)),
        }
    }

    fn create_bucket(&self) -> Result<()> {
        let creds = self.creds.clone();
        let bucket = self.loc.bucket.clone();
        let url = self.url();
        self.counters.put.fetch_add(1, Ordering::Relaxed);
        let res = self.block(async move { create_bucket(&creds, &bucket).await });
        res.map_err(|e| Error::Store(format!("{url}: the bucket does not exist and creating it failed: {e}")))
    }

    /// An error naming the store, the request and the object.
    pub fn fail(&self, op: &str, rel: &str, detail: &str) -> Error {
        failure(&self.url(), op, rel, detail)
    }
}

pub(crate) fn failure(url: &str, op: &str, rel: &str, detail: &str) -> Error {
    let code = s3_code(detail);
    let hint = match code.as_deref() {
        Some("InvalidAccessKeyId") | Some("SignatureDoesNotMatch") | Some("AccessDenied") | Some("InvalidToken") => {
            " — the object store refused the credentials: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the profile, or --store-opt access_key_id=/secret_access_key="
        }
        Some("NoSuchBucket") => " — the bucket does not exist (`shp init --store` creates it)",
        _ if is_transient(detail) => " — a temporary failure of the object store (retried); run the command again",
        _ => "",
    };
    let what = code.map(|c| format!("{c}: ")).unwrap_or_default();
    Error::Store(format!("{url}: {op} {rel}: {what}{}{hint}", first_line(detail)))
}

fn first_line(s: &str) -> String {
    let s = s.split("<?xml").next().unwrap_or(s).trim().trim_end_matches(':');
    let mut out: String = s.chars().take(300).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// The `<Code>` of an S3 error body quoted in an error message.
fn s3_code(detail: &str) -> Option<String> {
    let start = detail.find("<Code>")? + 6;
    let end = detail[start..].find("</Code>")? + start;
    Some(detail[start..end].to_string())
}

fn is_transient(detail: &str) -> bool {
    [
        "error sending request",
        "connection",
        "Connection",
        "timed out",
        "timeout",
        "500 Internal",
        "502",
        "503",
        "504",
        "InternalError",
        "SlowDown",
        "ServiceUnavailable",
        "incomplete",
        "reset",
        "broken pipe",
        "unexpected EOF",
        "error decoding response body",
    ]
    .iter()
    .any(|p| detail.contains(p))
}

/// Requests, from the runtime's tasks. Errors are strings: the caller names the object.
#[derive(Clone)]
pub struct Client {
    os: Arc<AmazonS3>,
    counters: Arc<Counters>,
}

fn retryable(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    match e {
        E::NotFound { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented
        | E::UnknownConfigurationKey { .. } => false,
        other => {
            let s = format!("{other:?}");
            s3_code(&s).is_none_or(|c| {
                matches!(
                    c.as_str(),
                    "InternalError" | "SlowDown" | "ServiceUnavailable" | "RequestTimeout"
                )
            }) && !s.contains("status: 403")
                && !s.contains("status: 400")
        }
    }
}

/// Renders an object_store error with its full chain (the S3 error body included).
fn render(e: &object_store::Error) -> String {
    let mut s = e.to_string();
    let dbg = format!("{e:?}");
    if let Some(code) = s3_code(&dbg) {
        if !s.contains(&code) {
            s = format!("{s} <Code>{code}</Code>");
        }
    }
    if matches!(e, object_store::Error::NotFound { .. }) {
        s = format!("NotFound: {s}");
    }
    s
}

impl Client {
    async fn retry<T, F, Fut>(&self, f: F) -> std::result::Result<T, object_store::Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, object_store::Error>>,
    {
        let mut delay = Duration::from_millis(50);
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The whole object, or None when it does not exist.
    pub async fn get(&self, key: &ObjPath) -> std::result::Result<Option<(Bytes, ETag)>, String> {
        let r = self
            .retry(|| async {
                self.counters.get.fetch_add(1, Ordering::Relaxed);
                let r = self.os.get(key).await?;
                let etag = r.meta.e_tag.clone();
                Ok((r.bytes().await?, etag))
            })
            .await;
        match r {
            Ok((b, etag)) => {
                self.counters.bytes_in.fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(Some((b, etag)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(render(&e)),
        }
    }

    /// Bytes `start..end` of an object.
    pub async fn get_range(&self, key: &ObjPath, start: u64, end: u64) -> std::result::Result<Bytes, String> {
        let r = self
            .retry(|| async {
                self.counters.get.fetch_add(1, Ordering::Relaxed);
                let opts = GetOptions {
                    range: Some(GetRange::Bounded(start..end)),
                    ..Default::default()
                };
                self.os.get_opts(key, opts).await?.bytes().await
            })
            .await
            .map_err(|e| render(&e))?;
        self.counters.bytes_in.fetch_add(r.len() as u64, Ordering::Relaxed);
        if r.len() as u64 != end - start {
            return Err(format!("asked for {} bytes at {start}, got {}", end - start, r.len()));
        }
        Ok(r)
    }

    pub async fn head(&self, key: &ObjPath) -> std::result::Result<Option<ObjectMeta>, String> {
        let r = self
            .retry(|| async {
                self.counters.head.fetch_add(1, Ordering::Relaxed);
                self.os.head(key).await
            })
            .await;
        match r {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(render(&e)),
        }
    }

    /// Writes an object (unconditionally: shp writes a key once, or rewrites it with the same
    /// meaning).
    pub async fn put(&self, key: &ObjPath, data: Bytes) -> std::result::Result<(), String> {
        let len = data.len() as u64;
        self.retry(|| async {
            self.counters.put.fetch_add(1, Ordering::Relaxed);
            self.os.put(key, PutPayload::from_bytes(data.clone())).await
        })
        .await
        .map_err(|e| render(&e))?;
        self.counters.bytes_out.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Writes an object only if it is still as it was read: absent (`expected` None) or with
    /// this entity tag.
    pub async fn put_if(
        &self,
        key: &ObjPath,
        data: Bytes,
        expected: Option<ETag>,
    ) -> std::result::Result<PutOutcome, String> {
        let len = data.len() as u64;
        let r = self
            .retry(|| async {
                self.counters.put.fetch_add(1, Ordering::Relaxed);
                let mode = match &expected {
                    None => PutMode::Create,
                    Some(tag) => PutMode::Update(UpdateVersion {
                        e_tag: tag.clone(),
                        version: None,
                    }),
                };
                let opts = PutOptions {
                    mode,
                    ..Default::default()
                };
                self.os.put_opts(key, PutPayload::from_bytes(data.clone()), opts).await
            })
            .await;
        match r {
            Ok(_) => {
                self.counters.bytes_out.fetch_add(len, Ordering::Relaxed);
                Ok(PutOutcome::Written)
            }
            Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }) => {
                Ok(PutOutcome::Conflict)
            }
            Err(e) => Err(render(&e)),
        }
    }

    pub async fn delete(&self, key: &ObjPath) -> std::result::Result<(), String> {
        let r = self
            .retry(|| async {
                self.counters.delete.fetch_add(1, Ordering::Relaxed);
                self.os.delete(key).await
            })
            .await;
        match r {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(render(&e)),
        }
    }

    /// Every object under `prefix`.
    pub async fn list(&self, prefix: &ObjPath) -> std::result::Result<Vec<ObjectMeta>, String> {
        use futures_util::TryStreamExt;
        self.retry(|| async {
            self.counters.list.fetch_add(1, Ordering::Relaxed);
            self.os.list(Some(prefix)).try_collect::<Vec<_>>().await
        })
        .await
        .map_err(|e| render(&e))
    }
}

impl Credentials {
    /// Options first, then the AWS environment variables, then the shared config and credentials
    /// files (`AWS_PROFILE` or `profile=`, default `default`), as the AWS tools read them.
    fn resolve(loc: &S3Location) -> Result<Credentials> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let profile_name = loc
            .opts
            .get("profile")
            .cloned()
            .or_else(|| env("AWS_PROFILE"))
            .unwrap_or_else(|| "default".into());
        let home = env("HOME").map(std::path::PathBuf::from);
        let file = |var: &str, name: &str| {
            env(var)
                .map(std::path::PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
        };
        let creds_file = file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| ini_section(&t, &profile_name))
            .unwrap_or_default();
        let config_section = if profile_name == "default" {
            "default".to_string()
        } else {
            format!("profile {profile_name}")
        };
        let config_file = file("AWS_CONFIG_FILE", "config")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| ini_section(&t, &config_section))
            .unwrap_or_default();
        let from_files = |k: &str| creds_file.get(k).or_else(|| config_file.get(k)).cloned();
        let pick = |opt: &str, envs: &[&str], file_key: &str| {
            loc.opts
                .get(opt)
                .cloned()
                .or_else(|| envs.iter().find_map(|e| env(e)))
                .or_else(|| from_files(file_key))
        };
        let endpoint = pick("endpoint", &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"], "endpoint_url");
        let region =
            pick("region", &["AWS_REGION", "AWS_DEFAULT_REGION"], "region").unwrap_or_else(|| "us-east-1".into());
        let key = pick("access_key_id", &["AWS_ACCESS_KEY_ID"], "aws_access_key_id");
        let secret = pick("secret_access_key", &["AWS_SECRET_ACCESS_KEY"], "aws_secret_access_key");
        let token = pick("session_token", &["AWS_SESSION_TOKEN"], "aws_session_token");
        let flag = |opt: &str, env_name: &str, default: bool| -> Result<bool> {
            match loc.opts.get(opt).cloned().or_else(|| env(env_name)) {
                None => Ok(default),
                Some(v) => match v.as_str() {
                    "true" | "1" | "yes" => Ok(true),
                    "false" | "0" | "no" => Ok(false),
                    _ => Err(Error::Store(format!(
                        "store option {opt}={v:?}: expected true or false"
                    ))),
                },
            }
        };
        let allow_http = flag(
            "allow_http",
            "AWS_ALLOW_HTTP",
            endpoint.as_deref().is_some_and(|e| e.starts_with("http://")),
        )?;
        let virtual_hosted = flag("virtual_hosted", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST", endpoint.is_none())?;
        if key.is_some() != secret.is_some() {
            return Err(Error::Store(format!(
                "{}: an access key id needs its secret access key (and the other way round)",
                loc.url()
            )));
        }
        Ok(Credentials {
            endpoint,
            region,
            key,
            secret,
            token,
            allow_http,
            virtual_hosted,
        })
    }
}

/// `key = value` lines of one `[section]` of an AWS-style INI file.
pub(crate) fn ini_section(text: &str, section: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    out
}

/// CreateBucket, signed with AWS Signature Version 4 (object_store has no call for it).
async fn create_bucket(c: &Credentials, bucket: &str) -> std::result::Result<(), String> {
    let (Some(key), Some(secret)) = (&c.key, &c.secret) else {
        return Err("no credentials to create it with".into());
    };
    let endpoint = c
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", c.region));
    let endpoint = endpoint.trim_end_matches('/');
    let url = format!("{endpoint}/{bucket}");
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .ok_or_else(|| format!("bad endpoint {endpoint:?}"))?
        .to_string();
    let body = if c.region == "us-east-1" {
        String::new()
    } else {
        format!(
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
            c.region
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let (date, amz_date) = amz_dates(now);
    let payload_hash = hex(&Sha256::digest(body.as_bytes()));
    let mut headers = vec![
        ("host".to_string(), host.clone()),
        ("x-amz-content-sha256".to_string(), payload_hash.clone()),
        ("x-amz-date".to_string(), amz_date.clone()),
    ];
    if let Some(t) = &c.token {
        headers.push(("x-amz-security-token".to_string(), t.clone()));
    }
    headers.sort();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{}\n", v.trim())).collect();
    let canonical = format!("PUT\n/{bucket}\n\n{canonical_headers}\n{signed}\n{payload_hash}");
    let scope = format!("{date}/{}/s3/aws4_request", c.region);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [c.region.as_str(), "s3", "aws4_request"] {
        k = hmac(&k, part.as_bytes());
    }
    let sig = hex(&hmac(&k, to_sign.as_bytes()));
    let auth = format!("AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={sig}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let mut req = client.put(&url).header("authorization", auth).body(body);
    for (k, v) in &headers {
        if k != "host" {
            req = req.header(k.as_str(), v.as_str());
        }
    }
    let resp = req.send().await.map_err(|e| format!("PUT {url}: {e}"))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    if text.contains("BucketAlreadyOwnedByYou") {
        return Ok(());
    }
    Err(format!("PUT {url}: {status} {}", s3_code(&text).unwrap_or_default()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

/// `YYYYMMDD` and `YYYYMMDDTHHMMSSZ` of a Unix time (UTC).
fn amz_dates(secs: u64) -> (String, String) {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = format!("{y:04}{m:02}{d:02}");
    let time = format!("{date}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60);
    (date, time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_refuse() {
        let l = S3Location::parse("s3://my-bucket/a/b/").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("my-bucket", "a/b"));
        assert_eq!(l.url(), "s3://my-bucket/a/b");
        assert_eq!(S3Location::parse("s3://bkt").unwrap().prefix, "");
        for bad in [
            "s3://",
            "s3://A_B/x",
            "http://b/x",
            "s3://bkt/a//b",
            "s3://bkt/../x",
            "s3://-bk/x",
        ] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
        let e = S3Location::parse("s3://bkt")
            .unwrap()
            .with_opts(&[("colour".into(), "red".into())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour") && e.contains("endpoint"), "{e}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn ini_sections() {
        let t = "[default]\naws_access_key_id = A\n# c\n[profile x]\nregion=eu-west-1\n[other]\naws_access_key_id=B\n";
        assert_eq!(ini_section(t, "default").get("aws_access_key_id").unwrap(), "A");
        assert_eq!(ini_section(t, "profile x").get("region").unwrap(), "eu-west-1");
        assert_eq!(ini_section(t, "other").get("aws_access_key_id").unwrap(), "B");
        assert!(ini_section(t, "none").is_empty());
    }

    #[test]
    fn sigv4_pieces_match_the_published_example() {
        // AWS's documented derived-key example (secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
        // 20120215, us-east-1, iam).
        let mut k = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20120215");
        for p in ["us-east-1", "iam", "aws4_request"] {
            k = hmac(&k, p.as_bytes());
        }
        assert_eq!(
            hex(&k),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
        assert_eq!(amz_dates(1_329_264_000).1, "20120215T000000Z");
        assert_eq!(amz_dates(1_796_256_000).0, "20261203");
    }

    #[test]
    fn failures_name_the_store_and_explain_credentials() {
        let e = failure(
            "s3://b/p",
            "GET",
            "refs.json",
            "Client error with status 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code></Error>",
        )
        .to_string();
        assert!(
            e.contains("s3://b/p: GET refs.json: InvalidAccessKeyId: Client error with status 403 Forbidden — "),
            "{e}"
        );
        assert!(e.contains("AWS_ACCESS_KEY_ID"), "{e}");
    }
}
