//! Image references (`oci:PATH[:REF]`, `docker-archive:PATH[:NAME:TAG|:@INDEX]`): what parses
//! is exactly the input split at the documented colons, and nothing parses into an empty path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shp_core::reference::{ArchiveRef, ImageId, ImageRef};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = s.parse::<ImageRef>() {
        match r {
            ImageRef::Oci { path, reference } => {
                let p = path.to_str().expect("path came from a str");
                assert!(!p.is_empty() && !p.contains(':'));
                let back = match &reference {
                    Some(r) => format!("oci:{p}:{r}"),
                    None => format!("oci:{p}"),
                };
                assert_eq!(back, s);
                if let Some(r) = reference {
                    assert!(!r.is_empty() && !r.chars().any(|c| c.is_whitespace() || c.is_control()));
                }
            }
            ImageRef::DockerArchive { path, reference } => {
                let p = path.to_str().expect("path came from a str");
                assert!(!p.is_empty() && !p.contains(':'));
                match reference {
                    None => assert_eq!(format!("docker-archive:{p}"), s),
                    Some(ArchiveRef::Tag(t)) => {
                        assert_eq!(format!("docker-archive:{p}:{t}"), s);
                        assert!(t.contains(':') && !t.ends_with(':') && !t.starts_with('@'));
                    }
                    Some(ArchiveRef::Index(i)) => {
                        // `@05` and `@+5` are the same index; compare numbers, not text.
                        let text = s.strip_prefix(&format!("docker-archive:{p}:@")).expect("@INDEX form");
                        assert_eq!(text.parse::<usize>().ok(), Some(i));
                    }
                }
            }
            #[allow(unreachable_patterns)]
            _ => {} // transports added later
        }
    }
    if let ImageId::Cid(c) = ImageId::parse(s) {
        assert_eq!(c.to_string().parse::<shp_core::Cid>().unwrap(), c);
    }
});
