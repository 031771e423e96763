//! The ES256 signer: a P-256 key, the certificate URL, and the Identity header
//! value (RFC 8224 §4) built from a PASSporT's claims.
//!
//! `ring` does the signing: measured against `p256` (RustCrypto) and
//! `aws-lc-rs` (tools/sign-candidates, figures in BENCHMARKS.md) it was within
//! noise of the fastest, builds in seconds without CMake, and is already in
//! the dependency tree for TLS.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use super::passport::{claims_json, header_json, Claims};
use super::pem_key;

/// A key that cannot be used, with the file it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", file.display())]
pub struct KeyError {
    pub file: PathBuf,
    pub reason: String,
}

/// Signing failed (the library refused; with a key that loaded this does not
/// happen in practice, but a call must never go out unsigned because of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ES256 signing failed")]
pub struct SignError;

/// Signs PASSporTs with one key for one certificate URL. Shared by the
/// signing threads (`Send + Sync`).
pub struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    x5u: String,
    /// base64url of the protected header: the same for every call.
    header_b64: String,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("x5u", &self.x5u)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads a PEM key file; errors name the file and the reason.
    pub fn from_pem_file(path: &Path, x5u: &str) -> Result<Signer, KeyError> {
        let fail = |reason: String| KeyError {
            file: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the key: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| fail("not a PEM file (binary content; DER keys must be converted with openssl pkey -outform PEM)".into()))?;
        Signer::from_pem(&text, x5u).map_err(fail)
    }

    /// Builds from PEM text; the error is the reason alone.
    pub fn from_pem(pem: &str, x5u: &str) -> Result<Signer, String> {
        check_x5u(x5u)?;
        let parts = pem_key::parse(pem)?;
        let public = parts.public.ok_or(
            "the key has no public half; write it out again with openssl ec -in KEY -out KEY",
        )?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &parts.private,
            &public,
            &rng,
        )
        .map_err(|_| {
            "the private and public halves of the key do not form a valid P-256 key pair"
                .to_string()
        })?;
        Ok(Signer {
            key,
            rng,
            x5u: x5u.to_string(),
            header_b64: URL_SAFE_NO_PAD.encode(header_json(x5u)),
        })
    }

    pub fn x5u(&self) -> &str {
        &self.x5u
    }

    /// The public key, uncompressed SEC1 point (for tests and `resolve`).
    pub fn public_key(&self) -> &[u8] {
        use ring::signature::KeyPair;
        self.key.public_key().as_ref()
    }

    /// The Identity header value: the PASSporT in JWS compact form and the
    /// header parameters `info=<x5u>;alg=ES256;ppt=shaken`. `iat` is the
    /// signing time in seconds since the Unix epoch.
    pub fn identity(&self, claims: &Claims, iat: u64) -> Result<String, SignError> {
        let payload = claims_json(claims, iat);
        let b64_len = |n: usize| n.div_ceil(3) * 4;
        let mut out = String::with_capacity(
            self.header_b64.len() + b64_len(payload.len()) + 90 + self.x5u.len() + 32,
        );
        out.push_str(&self.header_b64);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(payload.as_bytes(), &mut out);
        let signature = self
            .key
            .sign(&self.rng, out.as_bytes())
            .map_err(|_| SignError)?;
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut out);
        out.push_str(";info=<");
        out.push_str(&self.x5u);
        out.push_str(">;alg=ES256;ppt=shaken");
        Ok(out)
    }
}

/// The certificate URL must be https (verifiers fetch it; SHAKEN forbids
/// plain http) and must be writable inside `info=<…>` unchanged.
pub fn check_x5u(x5u: &str) -> Result<(), String> {
    if x5u.trim().is_empty() {
        return Err("x5u is empty; it must be the https URL of the signing certificate".into());
    }
    let rest = match x5u.get(..8) {
        Some(scheme) if scheme.eq_ignore_ascii_case("https://") => &x5u[8..],
        _ => return Err(format!("x5u {x5u:?} is not an https URL")),
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("x5u {x5u:?} names no host"));
    }
    if let Some(c) = x5u
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '\\'))
    {
        return Err(format!("x5u {x5u:?} contains {c:?}, which a URL cannot"));
    }
    Ok(())
}
