//! What a registry client sends: a request path, a Content-Range header and a query string (one
//! per line of the input). Parsing never panics; a path that routes names a valid repository; a
//! digest the registry accepts is one shp-core parses; an accepted Content-Range is ordered and prints
//! back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_station::registry::parse_content_range;
use shp_station::registry::paths::{self, Route};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.splitn(3, '\n');
    let (path, range, query) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    for method in [axum::http::Method::GET, axum::http::Method::PUT, axum::http::Method::POST] {
        if let Ok(route) = paths::route(path, &method) {
            if let Some(repo) = route.repo() {
                assert!(paths::check_repo(repo).is_ok(), "routed to an invalid repository {repo:?}");
            }
            assert!(route.describe().starts_with("/v2/"));
            if let Route::Blob(_, d) | Route::Referrers(_, d) = &route {
                // Digests are checked by the handlers; the predicate must agree with shp-core's parser.
                if paths::is_digest(d) {
                    assert!(shp_core::cid::parse_digest(d).is_ok(), "{d:?}");
                }
            }
        }
    }
    if let Ok((a, b)) = parse_content_range(range) {
        assert!(a <= b);
        assert_eq!(parse_content_range(&format!("{a}-{b}")).ok(), Some((a, b)));
    }
    let _ = paths::query(query);
    let _ = paths::decode(path);
});
