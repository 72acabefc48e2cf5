//! Refs in the bucket (`PREFIX/refs.json`), shared by every station on it.
//!
//! An update reads the object with its entity tag, applies the change and writes it back only if
//! the object is still as read (`If-Match`, or `If-None-Match: *` for the first write). When
//! another station got there first the update starts again from the new refs, so two concurrent
//! pushes of one tag end with one of them, and neither loses the other's other names. Writers
//! commit their blocks before they touch refs, as on disk.

use super::bucket::{Bucket, PutOutcome};
use crate::error::{Error, Result};
use crate::refs::Refs;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

const REFS: &str = "refs.json";
/// Updates that lose the race this many times in a row give up with an error.
const ATTEMPTS: u32 = 64;

pub struct BucketRefs {
    bucket: Arc<Bucket>,
}

impl BucketRefs {
    pub fn new(store: &super::S3Store) -> BucketRefs {
        BucketRefs {
            bucket: store.bucket().clone(),
        }
    }

    fn read(&self) -> Result<(Refs, Option<super::bucket::ETag>)> {
        let c = self.bucket.client();
        let key = self.bucket.key(REFS);
        match self.bucket.block(async move { c.get(&key).await }) {
            Ok(None) => Ok((
                Refs {
                    version: 1,
                    ..Default::default()
                },
                None,
            )),
            Ok(Some((b, etag))) => {
                let refs = serde_json::from_slice(&b)
                    .map_err(|e| Error::Store(format!("{}/{REFS}: not shp refs: {e}", self.bucket.url())))?;
                Ok((refs, Some(etag)))
            }
            Err(e) => Err(self.bucket.fail("GET", REFS, &e)),
        }
    }

    pub fn load(&self) -> Result<Refs> {
        self.read().map(|(r, _)| r)
    }

    /// Read-modify-write with a conditional put; `f` runs again on the fresh refs each time
    /// another writer won.
    pub fn update<T>(&self, mut f: impl FnMut(&mut Refs) -> Result<T>) -> Result<T> {
        let mut backoff = Duration::from_millis(5);
        for _ in 0..ATTEMPTS {
            let (mut refs, etag) = self.read()?;
            let out = f(&mut refs)?;
            refs.version = 1;
            let body = Bytes::from(serde_json::to_vec_pretty(&refs).expect("refs serialize"));
            let c = self.bucket.client();
            let key = self.bucket.key(REFS);
            let outcome = self
                .bucket
                .block(async move { c.put_if(&key, body, etag).await })
                .map_err(|e| self.bucket.fail("PUT", REFS, &e))?;
            match outcome {
                PutOutcome::Written => return Ok(out),
                PutOutcome::Conflict => {
                    // Jitter so that racing writers do not keep colliding.
                    let mut r = [0u8; 1];
                    let _ = getrandom::fill(&mut r);
                    std::thread::sleep(backoff + Duration::from_millis(r[0] as u64 % 20));
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
        Err(Error::Store(format!(
            "{}/{REFS}: other writers changed it {ATTEMPTS} times in a row while this update ran; run the command again",
            self.bucket.url()
        )))
    }
}
