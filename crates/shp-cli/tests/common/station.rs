//! `shp start` as a child process of a test, and raw HTTP/1.1 requests to it.

use super::ShpHome;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the station if a test fails before stopping it.
pub struct Guard(pub Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Guard {
    pub fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits (at most 60 s) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let out = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .output()
            .unwrap();
        assert!(out.status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.0.as_mut().unwrap().try_wait().unwrap() {
                self.0 = None;
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "shp start did not stop within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts `shp start` with `args`; returns the guard, the first stdout line and the stderr path.
pub fn start(h: &ShpHome, args: &[&str]) -> (Guard, String, std::path::PathBuf) {
    let log = h.scratch(&format!("station-{}.log", args.len()));
    let mut child = h
        .cmd()
        .arg("start")
        // Loopback only and no multicast: tests never reach past the machine.
        .args(["--p2p-listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = Guard(Some(child));
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(
        !line.is_empty(),
        "shp start printed nothing: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (guard, line.trim_end().to_string(), log)
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, head, body).
pub fn http(addr: &str, method: &str, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    split_response(&all)
}

pub fn split_response(all: &[u8]) -> (u16, String, Vec<u8>) {
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&all[..end]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, all[end + 4..].to_vec())
}
