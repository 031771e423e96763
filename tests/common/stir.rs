//! STIR test helpers: keys made with openssl, verification with Debian's
//! `secsipidx` (an implementation this project did not write), and decoding
//! of the PASSporT parts.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// A key pair generated for one test: private key and public key PEM files.
pub struct TestKey {
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub public: PathBuf,
}

/// Runs openssl with `args`; panics with its stderr when it fails.
pub fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh P-256 key in SEC1 form (`openssl ecparam -genkey`, what STI
/// certificate authorities document), with its public key.
pub fn p256_key() -> TestKey {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let public = dir.path().join("pub.pem");
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        key.to_str().unwrap(),
    ]);
    openssl(&[
        "ec",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    TestKey { dir, key, public }
}

/// Checks an Identity header value with `secsipidx -c`; the error is what
/// secsipidx printed. `-expire 60`: without it secsipidx 1.2 calls a PASSporT
/// expired once its `iat` is a second old, which a loaded test machine
/// easily reaches; 60 s is the freshness window verifiers use in practice.
pub fn secsipidx_verify(identity: &str, public: &Path) -> Result<String, String> {
    let out = Command::new("secsipidx")
        .args([
            "-c",
            "-expire",
            "60",
            "-identity",
            identity,
            "-p",
            public.to_str().unwrap(),
        ])
        .output()
        .expect("secsipidx runs (scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("exit {:?}: {text}", out.status.code()))
    }
}

/// The decoded protected header and claims of an Identity header value,
/// and its parameters (`info=…;alg=…;ppt=…`).
pub fn decode_identity(identity: &str) -> (serde_json::Value, serde_json::Value, String) {
    let (jws, params) = identity.split_once(';').expect("Identity has parameters");
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3, "JWS compact form: {jws}");
    let json = |p: &str| -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("base64url")).expect("JSON")
    };
    let signature = URL_SAFE_NO_PAD
        .decode(parts[2])
        .expect("base64url signature");
    assert_eq!(signature.len(), 64, "ES256 signatures are r||s, 64 bytes");
    (json(parts[0]), json(parts[1]), params.to_string())
}
