//! Authentication headers from outside: a `WWW-Authenticate` challenge a remote registry sent
//! (first line of the input) and an `Authorization` header a client sent to a station with token
//! auth (second line). Parsing never panics; a Bearer challenge's realm, service and scope, written
//! back as a header, parse to the same values; the station lets a request in only when its header
//! carries the token, as a Bearer value or as a Basic password.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use shp_station::auth::{Auth, AuthSpec, Verdict};
use shp_station::remote::Challenge;

const SECRET: &str = "s3cret-token";

fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (challenge, authorization) = text.split_once('\n').unwrap_or((text, ""));

    if let Some(Challenge::Bearer { realm, service, scope }) = Challenge::parse(challenge) {
        let mut h = format!("Bearer realm={}", quoted(&realm));
        if let Some(s) = &service {
            h += &format!(",service={}", quoted(s));
        }
        if let Some(s) = &scope {
            h += &format!(",scope={}", quoted(s));
        }
        let back = Challenge::parse(&h);
        assert_eq!(back, Some(Challenge::Bearer { realm, service, scope }), "{h:?}");
    }

    let auth = Auth::load(&AuthSpec::Token(SECRET.into()), true).expect("token auth");
    let allowed = matches!(auth.check(Some(authorization)), Verdict::Allowed);
    let (scheme, value) = authorization.trim().split_once(' ').unwrap_or((authorization, ""));
    let value = value.trim();
    let carries = if scheme.eq_ignore_ascii_case("bearer") {
        value == SECRET
    } else if scheme.eq_ignore_ascii_case("basic") {
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| s.split_once(':').map(|(_, p)| p == SECRET))
            .unwrap_or(false)
    } else {
        false
    };
    assert_eq!(allowed, carries, "{authorization:?}");
    // No header at all is always a challenge.
    assert!(matches!(auth.check(None), Verdict::Challenge(_)));
});
