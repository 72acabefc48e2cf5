//! `shp init` makes the station identity; `shp start` serves the registry, prints its address and
//! peer id on its first stdout line, and stops cleanly on SIGTERM (requests in flight finish).

mod common;

use common::station::*;
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn init_makes_the_identity_and_start_serves_until_sigterm() {
    let h = ShpHome::new();
    let key = h.dir.join("station.key");
    let meta = std::fs::metadata(&key).expect("shp init writes station.key");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let key_bytes = std::fs::read(&key).unwrap();
    h.ok(&["init"]);
    assert_eq!(std::fs::read(&key).unwrap(), key_bytes, "init keeps the identity");

    let (mut g, line, log) = start(&h, &["--listen", "127.0.0.1:0", "--log-level", "debug"]);
    // listening http://127.0.0.1:PORT peer 12D3KooW…
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(parts.len(), 4, "{line}");
    assert_eq!((parts[0], parts[2]), ("listening", "peer"), "{line}");
    let addr = parts[1]
        .strip_prefix("http://127.0.0.1:")
        .map(|p| format!("127.0.0.1:{p}"));
    let addr = addr.unwrap_or_else(|| panic!("{line}"));
    assert!(parts[3].starts_with("12D3KooW") && parts[3].len() > 45, "{line}");
    let (status, head, _) = http(&addr, "GET", "/v2/", "");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("docker-distribution-api-version: registry/2.0"),
        "{head}"
    );

    // skopeo pushes into the station; the image is then a name in the home, pulled bit-exact.
    let fixture = oci_fixture();
    let src = format!("oci:{}:busybox-gzip", fixture.dir.display());
    let out = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &src,
        &format!("docker://{addr}/test/bb:v1"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(h.names().contains("test/bb:v1"), "{:?}", h.names());
    let dest = h.scratch("pulled");
    h.ok(&["pull", "test/bb:v1", &format!("oci:{}:v1", dest.display())]);
    let want = fixture.ref_digest("busybox-gzip");
    let got: Value = serde_json::from_slice(&std::fs::read(dest.join("index.json")).unwrap()).unwrap();
    assert_eq!(got["manifests"][0]["digest"], want.as_str());

    // A blob download in flight when SIGTERM arrives still completes.
    let m: Value = serde_json::from_slice(&fixture.blob(&want)).unwrap();
    let ld = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let layer = fixture.blob(&ld);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET /v2/test/bb/blobs/{ld} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 64];
    let n = s.read(&mut first).unwrap();
    assert!(n > 0);
    // Keep reading while the station shuts down: it waits for this response to finish, and the
    // response only finishes if someone reads it.
    let reader = std::thread::spawn(move || {
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        rest
    });
    let status = g.terminate();
    let rest = reader.join().unwrap();
    let mut all = first[..n].to_vec();
    all.extend_from_slice(&rest);
    let (code, _, body) = split_response(&all);
    assert_eq!(code, 200);
    assert_eq!(digest_of(&body), ld, "the in-flight download completed");
    assert_eq!(body.len(), layer.len());
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("SIGTERM") && log.contains("station stopped"), "{log}");
    // The port is closed.
    assert!(TcpStream::connect(&addr).is_err());
}

#[test]
fn start_refuses_bad_configurations() {
    let h = ShpHome::new();
    let out = h.run(&["start", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--insecure-public"), "{}", stderr(&out));
    let out = h.run(&["start", "--listen", "not an address"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = h.run(&["start", "--listen", "127.0.0.1:0", "--auth", "bogus"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("htpasswd:FILE"), "{}", stderr(&out));
    std::fs::write(
        h.dir.join("station.json"),
        r#"{"listen": "127.0.0.1:0", "colour": "blue"}"#,
    )
    .unwrap();
    let out = h.run(&["start"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("station.json") && stderr(&out).contains("colour"),
        "{}",
        stderr(&out)
    );

    // station.json is read and flags override it: token auth from the file.
    std::fs::write(
        h.dir.join("station.json"),
        r#"{"listen": "127.0.0.1:0", "auth": "token:abc"}"#,
    )
    .unwrap();
    let (mut g, line, _) = start(&h, &[]);
    let addr = line
        .split(' ')
        .nth(1)
        .unwrap()
        .strip_prefix("http://")
        .unwrap()
        .to_string();
    let (status, head, _) = http(&addr, "POST", "/v2/x/blobs/uploads/", "");
    assert_eq!(status, 401);
    assert!(head.contains("Bearer realm="), "{head}");
    let (status, _, _) = http(&addr, "POST", "/v2/x/blobs/uploads/", "Authorization: Bearer abc\r\n");
    assert_eq!(status, 202);
    assert!(g.terminate().success());
    let (mut g, line, _) = start(&h, &["--auth", "off"]);
    let addr = line
        .split(' ')
        .nth(1)
        .unwrap()
        .strip_prefix("http://")
        .unwrap()
        .to_string();
    let (status, _, _) = http(&addr, "POST", "/v2/x/blobs/uploads/", "");
    assert_eq!(status, 202, "--auth off overrides the file");
    assert!(g.terminate().success());
    // The upload left in progress was discarded at shutdown.
    let tmp = h.dir.join("store/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
