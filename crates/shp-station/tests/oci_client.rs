//! A second, independent registry client — the `oci-client` crate (ORAS project) — pushes to and
//! pulls from a station on 127.0.0.1: chunked blob uploads, raw manifests with their digests
//! kept, its own high-level push and pull, cross-repository mount, tag listing and digest HEAD.

mod registry_support;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciDescriptor, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use registry_support::*;
use serde_json::Value;

fn oci() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn reference(st: &TestStation, repo_tag: &str) -> Reference {
    format!("{}/{repo_tag}", st.addr).parse().unwrap()
}

fn descriptor(d: &Value) -> OciDescriptor {
    OciDescriptor {
        media_type: d["mediaType"].as_str().unwrap().to_string(),
        digest: d["digest"].as_str().unwrap().to_string(),
        size: d["size"].as_i64().unwrap(),
        ..Default::default()
    }
}

/// The fixture's images go in blob by blob (oci-client's chunked upload) with their manifests
/// byte for byte, and come back out identical; tags list; digest HEAD agrees.
#[test]
fn fixture_images_round_trip_through_oci_client() {
    let st = TestStation::start();
    let c = oci();
    let auth = RegistryAuth::Anonymous;
    let src = Layout::fixture();
    let tags = ["busybox-gzip", "busybox-2layer", "busybox-zstd", "busybox-none"];
    rt().block_on(async {
        for tag in tags {
            let r = reference(&st, &format!("second/client:{tag}"));
            c.store_auth_if_needed(r.resolve_registry(), &auth).await;
            let top = src.top(Some(tag));
            let mbytes = src.blob(top["digest"].as_str().unwrap());
            let m: Value = serde_json::from_slice(&mbytes).unwrap();
            for d in m["layers"].as_array().unwrap().iter().chain([&m["config"]]) {
                let digest = d["digest"].as_str().unwrap();
                c.push_blob(&r, &src.blob(digest), digest).await.unwrap();
            }
            let mt = top["mediaType"].as_str().unwrap();
            c.push_manifest_raw(&r, mbytes.clone(), mt.parse().unwrap())
                .await
                .unwrap();

            // Back out: the manifest byte for byte, every blob with its digest.
            let (raw, digest) = c.pull_manifest_raw(&r, &auth, &[mt]).await.unwrap();
            assert_eq!(raw, mbytes, "{tag}: manifest bytes");
            assert_eq!(digest, top["digest"].as_str().unwrap(), "{tag}: manifest digest");
            assert_eq!(c.fetch_manifest_digest(&r, &auth).await.unwrap(), digest);
            for d in m["layers"].as_array().unwrap().iter().chain([&m["config"]]) {
                let mut out = Vec::new();
                c.pull_blob(&r, &descriptor(d), &mut out).await.unwrap();
                assert_eq!(sha256(&out), d["digest"].as_str().unwrap(), "{tag}: blob");
                assert_eq!(out.len() as i64, d["size"].as_i64().unwrap());
            }
        }
        let listed = c
            .list_tags(&reference(&st, "second/client:x"), &auth, None, None)
            .await
            .unwrap();
        let mut want: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        want.sort();
        let mut got = listed.tags.clone();
        got.sort();
        assert_eq!(got, want);
        // Paged: two at a time, in the registry's (lexical) order.
        let page = c
            .list_tags(&reference(&st, "second/client:x"), &auth, Some(2), Some(&want[1]))
            .await
            .unwrap();
        assert_eq!(page.tags, want[2..4].to_vec());
    });
}

/// oci-client's own image model: it builds the manifest itself, pushes, and pulls the image back
/// (layers and config identical); a blob mounted across repositories is served by the other one.
#[test]
fn high_level_push_pull_and_mount() {
    let st = TestStation::start();
    let c = oci();
    let auth = RegistryAuth::Anonymous;
    let src = Layout::fixture();
    let m: Value =
        serde_json::from_slice(&src.blob(src.top(Some("busybox-2layer"))["digest"].as_str().unwrap())).unwrap();
    let layers: Vec<ImageLayer> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            ImageLayer::new(
                src.blob(l["digest"].as_str().unwrap()),
                l["mediaType"].as_str().unwrap().to_string(),
                None,
            )
        })
        .collect();
    let cfg = Config::new(
        src.blob(m["config"]["digest"].as_str().unwrap()),
        m["config"]["mediaType"].as_str().unwrap().to_string(),
        None,
    );
    rt().block_on(async {
        let r = reference(&st, "hl/app:v1");
        c.push(&r, &layers, cfg.clone(), &auth, None).await.unwrap();
        let img = c
            .pull(&r, &auth, layers.iter().map(|l| l.media_type.as_str()).collect())
            .await
            .unwrap();
        // oci-client collects layers as their downloads finish: compare them as a set.
        let sorted = |ls: &[ImageLayer]| {
            let mut v: Vec<(String, Vec<u8>)> = ls.iter().map(|l| (l.sha256_digest(), l.data.clone())).collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&img.layers), sorted(&layers));
        assert_eq!(img.manifest.as_ref().unwrap().layers.len(), layers.len());
        assert_eq!(img.config.data, cfg.data);
        let (raw, digest) = c.pull_manifest_raw(&r, &auth, &[OCI_IMAGE_MEDIA_TYPE]).await.unwrap();
        assert_eq!(Some(sha256(&raw)), img.digest);
        assert_eq!(digest, sha256(&raw));
        // Accept negotiation: an OCI manifest is not passed off as a docker schema2 one.
        let err = c
            .pull_manifest_raw(&r, &auth, &[IMAGE_MANIFEST_MEDIA_TYPE])
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("ManifestUnknown"), "{err:?}");

        // Mount the first layer into another repository, then read it there.
        let other = reference(&st, "hl/other:v1");
        let d = layers[0].sha256_digest();
        c.mount_blob(&other, &r, &d).await.unwrap();
        let mut out = Vec::new();
        let desc = OciDescriptor {
            media_type: layers[0].media_type.clone(),
            digest: d.clone(),
            size: layers[0].data.len() as i64,
            ..Default::default()
        };
        c.pull_blob(&other, &desc, &mut out).await.unwrap();
        assert_eq!(out, layers[0].data);

        // A manifest the station does not have is an error, not an empty answer.
        let missing = reference(&st, "hl/app:nope");
        assert!(c
            .pull_manifest_raw(&missing, &auth, &[OCI_IMAGE_MEDIA_TYPE])
            .await
            .is_err());
    });
}
