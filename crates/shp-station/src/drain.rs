//! Reads what a handler left of a request body before the response goes out.
//!
//! Many answers are known before the body is read (an unknown upload, a Content-Range that
//! does not match the session, a bad digest). Hyper would then send the response and close the
//! connection while the client is still writing its body, and the client sees a broken pipe or a
//! reset instead of the registry's error (Go's net/http server drains up to 256 KiB for the same
//! reason). This middleware hands the handler a body that reads through a shared handle, and
//! after the handler is done reads and discards whatever it left — at most [`DRAIN_LIMIT`]
//! bytes and for at most [`DRAIN_TIME`] — so the client can read the answer. Bigger or slower
//! leftovers are not waited for: the connection closes as before.

use axum::body::{Body, BodyDataStream};
use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// The most unread body bytes read and thrown away after a response is known.
pub const DRAIN_LIMIT: u64 = 64 << 20;
/// The longest the drain waits for them.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The middleware: wraps bodies of methods that carry one (POST, PUT, PATCH).
pub async fn drain_unread(req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let shared = Arc::new(Mutex::new(body.into_data_stream()));
    let reader = futures_util::stream::unfold(shared.clone(), |s| async move {
        let item = s.lock().await.next().await;
        item.map(|chunk| (chunk, s))
    });
    let res = next.run(Request::from_parts(parts, Body::from_stream(reader))).await;
    // The handler's body has been dropped (or fully read) by now: what is left is ours.
    let mut rest = shared.lock().await;
    let _ = tokio::time::timeout(DRAIN_TIME, drain(&mut rest, DRAIN_LIMIT)).await;
    res
}

/// Reads and discards up to `limit` bytes; stops early at the end, on an error or past the limit.
async fn drain(s: &mut BodyDataStream, limit: u64) -> u64 {
    let mut n = 0u64;
    while n <= limit {
        match s.next().await {
            Some(Ok(chunk)) => n += chunk.len() as u64,
            _ => break,
        }
    }
    n
}
