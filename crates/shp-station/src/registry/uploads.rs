//! Blob upload sessions. Each is a spool file under `HOME/store/tmp` (`upload-<id>`) plus the
//! running sha256 of what it holds, so completing an upload checks the digest without reading the
//! spool again. A chunk (PATCH, or the body of the closing PUT) is all-or-nothing: if it fails
//! part way (client gone, wrong length) the spool is cut back to where it was and the client can
//! ask for the offset (GET) and resume from there.

use super::ApiError;
use axum::body::Body;
use axum::http::StatusCode;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use shp_core::cid::format_digest;
use shp_core::{Error, Home};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;

struct Session {
    repo: String,
    path: PathBuf,
    size: u64,
    sha: Sha256,
    /// A request is writing to it.
    busy: bool,
}

/// The uploads in progress.
pub struct Uploads {
    home: PathBuf,
    dir: PathBuf,
    map: Mutex<HashMap<String, Session>>,
}

/// `Content-Range` of a chunk: `<start>-<end>` (inclusive; `bytes ` and `/total` tolerated).
pub fn parse_content_range(v: &str) -> Result<(u64, u64), ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "RANGE_INVALID",
            format!("Content-Range {v:?}: expected <start>-<end>"),
        )
    };
    let s = v.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or("");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b) = (
        a.trim().parse::<u64>().map_err(|_| bad())?,
        b.trim().parse::<u64>().map_err(|_| bad())?,
    );
    if b < a {
        return Err(bad());
    }
    Ok((a, b))
}

impl Uploads {
    pub fn new(home_dir: &Path) -> Uploads {
        Uploads {
            home: home_dir.to_path_buf(),
            dir: home_dir.join("store").join("tmp"),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// An I/O error on an upload's spool file: a full disk names the home (507), anything else is
    /// an internal error naming the file.
    fn spool_err(&self, path: &Path, e: std::io::Error) -> ApiError {
        let e = Error::IoPath {
            path: path.display().to_string(),
            source: e,
        };
        if e.is_no_space() {
            return super::core_err(Error::NoSpace {
                home: self.home.display().to_string(),
                detail: e.to_string(),
            });
        }
        ApiError::internal(e)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many uploads are in progress.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts an upload; returns its id.
    pub fn create(&self, repo: &str) -> Result<String, ApiError> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(ApiError::internal)?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::create_dir_all(&self.dir).map_err(ApiError::internal)?;
        let path = self.dir.join(format!("upload-{id}"));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| self.spool_err(&path, e))?;
        self.lock().insert(
            id.clone(),
            Session {
                repo: repo.to_string(),
                path,
                size: 0,
                sha: Sha256::new(),
                busy: false,
            },
        );
        Ok(id)
    }

    fn get<'m>(map: &'m mut HashMap<String, Session>, repo: &str, id: &str) -> Result<&'m mut Session, ApiError> {
        match map.get_mut(id) {
            Some(s) if s.repo == repo => Ok(s),
            _ => Err(ApiError::upload_unknown(id)),
        }
    }

    fn busy(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "BLOB_UPLOAD_INVALID",
            format!("upload {id} is being written by another request"),
        )
    }

    /// The bytes received so far.
    pub fn size(&self, repo: &str, id: &str) -> Result<u64, ApiError> {
        Ok(Uploads::get(&mut self.lock(), repo, id)?.size)
    }

    /// Cancels an upload and removes its spool.
    pub fn cancel(&self, repo: &str, id: &str) -> Result<(), ApiError> {
        let mut map = self.lock();
        Uploads::get(&mut map, repo, id)?;
        let s = map.remove(id).expect("present");
        if !s.busy {
            let _ = std::fs::remove_file(&s.path);
        }
        Ok(())
    }

    /// Discards every upload (at shutdown). Returns how many there were.
    pub fn discard_all(&self) -> usize {
        let mut map = self.lock();
        let n = map.len();
        for (_, s) in map.drain() {
            let _ = std::fs::remove_file(&s.path);
        }
        n
    }

    /// Appends a request body. `range` (from Content-Range) must start at the current offset;
    /// `len` (Content-Length) and the range's length must match what arrives. Returns the new size.
    pub async fn append(
        &self,
        repo: &str,
        id: &str,
        range: Option<(u64, u64)>,
        len: Option<u64>,
        body: Body,
    ) -> Result<u64, ApiError> {
        let (path, start, mut sha) = {
            let mut map = self.lock();
            let s = Uploads::get(&mut map, repo, id)?;
            if s.busy {
                return Err(Uploads::busy(id));
            }
            if let Some((a, b)) = range {
                if a != s.size {
                    return Err(ApiError::new(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "RANGE_INVALID",
                        format!(
                            "chunk starts at {a}, but upload {id} holds {} bytes: resume from there",
                            s.size
                        ),
                    )
                    .header(axum::http::header::RANGE, format!("0-{}", s.size.max(1) - 1))
                    .header(axum::http::header::LOCATION, super::upload_location(repo, id)));
                }
                let want = b - a + 1;
                if len.is_some_and(|l| l != want) {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "SIZE_INVALID",
                        format!(
                            "Content-Range {a}-{b} is {want} bytes but Content-Length says {}",
                            len.unwrap_or(0)
                        ),
                    ));
                }
            }
            s.busy = true;
            (s.path.clone(), s.size, s.sha.clone())
        };
        let expect = range.map(|(a, b)| b - a + 1).or(len);
        let res: Result<u64, ApiError> = async {
            let f = tokio::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .await
                .map_err(|e| self.spool_err(&path, e))?;
            let mut w = tokio::io::BufWriter::with_capacity(256 * 1024, f);
            let mut n = 0u64;
            let mut s = body.into_data_stream();
            while let Some(chunk) = s.next().await {
                let chunk = chunk.map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "BLOB_UPLOAD_INVALID",
                        format!("request body: {e}"),
                    )
                })?;
                n += chunk.len() as u64;
                if expect.is_some_and(|e| n > e) {
                    return Err(size_invalid(expect.unwrap_or(0), n));
                }
                sha.update(&chunk);
                w.write_all(&chunk).await.map_err(|e| self.spool_err(&path, e))?;
            }
            if expect.is_some_and(|e| n != e) {
                return Err(size_invalid(expect.unwrap_or(0), n));
            }
            w.flush().await.map_err(|e| self.spool_err(&path, e))?;
            Ok(n)
        }
        .await;
        let mut map = self.lock();
        let Some(s) = map.get_mut(id) else {
            // Cancelled (or the station is stopping) while this request wrote.
            let _ = std::fs::remove_file(&path);
            return Err(ApiError::upload_unknown(id));
        };
        s.busy = false;
        match res {
            Ok(n) => {
                s.size = start + n;
                s.sha = sha;
                Ok(s.size)
            }
            Err(e) => {
                // All-or-nothing: cut the spool back to where this chunk started.
                if let Err(t) = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(start))
                {
                    tracing::error!("upload {id}: cannot cut the spool back: {t}");
                    let s = map.remove(id).expect("present");
                    let _ = std::fs::remove_file(&s.path);
                }
                Err(e)
            }
        }
    }

    /// Completes an upload: checks its digest, then stores it in the home (a blocking thread).
    /// The session is over whatever happens.
    pub async fn finish(&self, home: &Arc<Home>, repo: &str, id: &str, digest: &str) -> Result<(), ApiError> {
        let s = {
            let mut map = self.lock();
            if Uploads::get(&mut map, repo, id)?.busy {
                return Err(Uploads::busy(id));
            }
            map.remove(id).expect("present")
        };
        let actual = format_digest(&s.sha.finalize().into());
        if actual != digest {
            let _ = std::fs::remove_file(&s.path);
            return Err(ApiError::digest_invalid(format!(
                "the uploaded content ({} bytes) has digest {actual}, not {digest}",
                s.size
            ))
            .detail(serde_json::json!({ "digest": digest })));
        }
        let (home, path, d) = (home.clone(), s.path.clone(), digest.to_string());
        let res = tokio::task::spawn_blocking(move || {
            let r = put_sniffed(&home, &path, &d);
            let _ = std::fs::remove_file(&path);
            r
        })
        .await
        .map_err(ApiError::internal)?;
        match res {
            Ok(storage) => {
                tracing::info!(repo, digest, size = s.size, storage = %storage, "blob stored");
                Ok(())
            }
            Err(e) => Err(super::core_err(e)),
        }
    }
}

fn size_invalid(expected: u64, got: u64) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "SIZE_INVALID",
        format!("the chunk was announced as {expected} bytes but {got} arrived"),
    )
}

/// Stores a spooled blob: as a layer when its first bytes say so (falling back to verbatim when it
/// is not a valid one), else verbatim. Returns how it was stored.
pub fn put_sniffed(home: &Home, path: &Path, digest: &str) -> Result<String, Error> {
    let mut file = std::fs::File::open(path)?;
    let mut head = Vec::with_capacity(512);
    (&mut file).take(512).read_to_end(&mut head)?;
    let layer = looks_like_layer(&head);
    let mut put = |layer| -> shp_core::Result<_> {
        file.seek(SeekFrom::Start(0))?;
        home.put_blob(
            &mut std::io::BufReader::with_capacity(1 << 20, &file),
            Some(digest),
            layer,
        )
    };
    let imported = match put(layer) {
        Err(e) if layer && not_a_layer(&e) => {
            tracing::debug!(digest, "looked like a layer but is not one ({e}): stored verbatim");
            put(false)?
        }
        r => r?,
    };
    if let shp_core::blob::Storage::Recipe(_) = &imported.storage {
        // The client's bytes, just proven to be the blob: the first pull of this fresh layer is
        // then served from them instead of a rebuild (a fleet pulls right after a push).
        if let Ok(d) = shp_core::cid::parse_digest(digest) {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if let Err(e) = home.blob_cache().adopt(&d, size, path) {
                tracing::debug!(digest, "the upload was not kept in the blob cache: {e}");
            }
        }
    }
    Ok(imported.storage.to_string())
}

/// Gzip or zstd magic, or a 512-byte tar header whose checksum holds.
fn looks_like_layer(head: &[u8]) -> bool {
    if head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return true;
    }
    match <&[u8; 512]>::try_from(head) {
        Ok(h) => h.iter().any(|&b| b != 0) && shp_core::tar::check_checksum(h).is_ok(),
        Err(_) => false,
    }
}

/// Errors that say "these bytes are not a layer", as opposed to "they are not what was promised".
fn not_a_layer(e: &Error) -> bool {
    matches!(
        e,
        Error::Tar { .. } | Error::Compression { .. } | Error::TooLarge { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99").unwrap(), (0, 99));
        assert_eq!(parse_content_range("bytes 100-199/*").unwrap(), (100, 199));
        for bad in ["", "5", "9-3", "a-b", "-3"] {
            assert_eq!(parse_content_range(bad).unwrap_err().code, "RANGE_INVALID", "{bad}");
        }
    }

    #[test]
    fn sniffing() {
        assert!(looks_like_layer(&[0x1f, 0x8b, 8]));
        assert!(looks_like_layer(&[0x28, 0xb5, 0x2f, 0xfd, 0]));
        assert!(!looks_like_layer(b"{\"schemaVersion\":2}"));
        assert!(!looks_like_layer(&[0u8; 512]));
    }
}
