//! `shp fetch` and `shp pull --from` between two homes: the busybox fixtures pushed into home A,
//! A served by the station's real gateway on 127.0.0.1:0 (in this process), home B driven through
//! the `shp` binary. Also `shp gateway` as a process.

mod common;

use common::*;
use serde_json::Value;
use shp_core::{car, Cid, Home};
use shp_station::gateway::RunningGateway;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;

fn serve(home: &ShpHome) -> RunningGateway {
    let h = Arc::new(Home::open(&home.dir).unwrap());
    RunningGateway::start(h, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// How many blocks of `root`'s DAG in home `a` home `b` lacks.
fn lacking(a: &ShpHome, b: &ShpHome, root: &str) -> u64 {
    let (ha, hb) = (Home::open(&a.dir).unwrap(), Home::open(&b.dir).unwrap());
    let root: Cid = root.parse().unwrap();
    let mut n = 0;
    car::walk(ha.store(), &root, &mut |c, _| {
        if !hb.store().has(c).unwrap() {
            n += 1;
        }
        Ok(())
    })
    .unwrap();
    n
}

#[test]
fn pull_from_a_station_is_bit_exact_and_shared_layers_do_not_move() {
    let src = oci_fixture();
    let a = ShpHome::new();
    let r1 = a.push(&oci_ref(&src.dir, "busybox-gzip"), &[]);
    let r2 = a.push(&oci_ref(&src.dir, "busybox-2layer"), &[]);
    let gw = serve(&a);
    let b = ShpHome::new();

    // pull CID DEST --from URL: fetch, then export
    let out = Layout::open(b.scratch("out"));
    let o = b.run(&["pull", &r1, &oci_ref(&out.dir, "busybox-gzip"), "--from", &gw.url()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), r1, "pull prints the root");
    assert!(stderr(&o).contains("fetched "), "{}", stderr(&o));
    assert_roundtrip(&src, "busybox-gzip", &out, "busybox-gzip");
    let ls = b.ls();
    assert_eq!(ls.len(), 1);
    assert_eq!(ls[0]["name"], Value::Null, "pinned");
    assert_eq!(ls[0]["root"], r1.as_str());

    // the second image shares the base layer: only the blocks B lacks move
    let want = lacking(&a, &b, &r2);
    let total = {
        let h = Home::open(&a.dir).unwrap();
        car::walk(h.store(), &r2.parse().unwrap(), &mut |_, _| Ok(())).unwrap()
    };
    assert!(want > 0 && want < total, "{want} of {total}");
    let v = b.json(&["fetch", &r2, "--from", &gw.url(), "--tag", "bb:2"]);
    assert_eq!(num(&v, "blocks_fetched"), want, "{v}");
    assert!(num(&v, "bytes_fetched") > 0);
    assert_eq!(v["root"], r2.as_str());
    assert_eq!(v["name"], "bb:2");
    assert_eq!(v["peers"][0]["url"], gw.url().as_str());
    assert_eq!(num(&v["peers"][0], "blocks"), want);
    assert!(b.names().contains("bb:2"));
    b.pull("bb:2", &oci_ref(&out.dir, "busybox-2layer"));
    assert_roundtrip(&src, "busybox-2layer", &out, "busybox-2layer");
    b.verify(true);

    // again: nothing moves; default output ends with the root
    let o = b.ok(&["fetch", &r2, "--from", &gw.url()]);
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines.last().copied(), Some(r2.as_str()));
    assert!(o.contains("fetched 0 blocks (0 bytes on the wire"), "{o}");
    assert!(o.contains("name (pinned, unnamed)"), "{o}");

    // A named fetch of another image of the repository: the blocks at the same places in the one
    // held (root, manifest, config) are its delta bases; what is stored is the same.
    let c = ShpHome::new();
    let v1 = c.json(&["fetch", &r1, "--from", &gw.url(), "--tag", "bb:1"]);
    assert_eq!(num(&v1, "blocks_delta"), 0, "nothing to take a delta from: {v1}");
    let v2 = c.json(&["fetch", &r2, "--from", &gw.url(), "--tag", "bb:2"]);
    assert_eq!(num(&v2, "blocks_fetched"), want, "{v2}");
    assert!(
        num(&v2, "blocks_delta") >= 2,
        "the root and the manifest's node at least: {v2}"
    );
    assert_eq!(num(&v2, "block_bytes"), num(&v, "block_bytes"), "the same blocks");
    assert!(num(&v2, "bytes_fetched") < num(&v, "bytes_fetched"), "{v2} vs {v}");
    let out2 = Layout::open(c.scratch("out"));
    c.pull("bb:2", &oci_ref(&out2.dir, "busybox-2layer"));
    assert_roundtrip(&src, "busybox-2layer", &out2, "busybox-2layer");
    c.verify(true);
}

#[test]
fn fetch_errors_have_exit_codes_and_change_nothing() {
    let src = oci_fixture();
    let a = ShpHome::new();
    let root = a.push(&oci_ref(&src.dir, "busybox-gzip"), &[]);
    let gw = serve(&a);
    let b = ShpHome::new();
    let before = b.state();

    // a CID no peer has: 3
    let absent = Cid::hash(shp_core::cid::RAW, b"absent").to_string();
    let (code, err) = b.fails(&["fetch", &absent, "--from", &gw.url()]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&absent) && err.contains("not found"), "{err}");
    // usage errors: 2
    let (code, err) = b.fails(&["fetch", "bafy-nope", "--from", &gw.url()]);
    assert_eq!(code, 2, "{err}");
    let (code, err) = b.fails(&["fetch", &root, "--from", "ftp://example"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ftp://example"), "{err}");
    // No --from, no station, no peers configured (and no mDNS in tests): a clear failure.
    std::fs::write(b.dir.join("station.json"), r#"{"mdns": false}"#).unwrap();
    let (code, err) = b.fails(&["fetch", &root]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no peers"), "{err}");
    std::fs::remove_file(b.dir.join("station.json")).unwrap();
    // a peer that is not there: 1, naming it
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (code, err) = b.fails(&["fetch", &root, "--from", &dead]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&dead), "{err}");
    assert_eq!(b.state(), before, "failed fetches change nothing");
}

#[test]
fn shp_gateway_serves_a_home_as_a_process() {
    let src = oci_fixture();
    let a = ShpHome::new();
    let root = a.push(&oci_ref(&src.dir, "busybox-gzip"), &[]);
    // port 0: the process prints the URL it listens on
    let mut child = a
        .cmd()
        .args(["gateway", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _guard = Kill(child);
    let url = line.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url:?}");
    let b = ShpHome::new();
    let out = Layout::open(b.scratch("out"));
    b.ok(&["pull", &root, &oci_ref(&out.dir, "busybox-gzip"), "--from", &url]);
    assert_roundtrip(&src, "busybox-gzip", &out, "busybox-gzip");
}
