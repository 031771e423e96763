//! Reading an ES256 private key from PEM: SEC1 (`EC PRIVATE KEY`, what
//! `openssl ecparam -genkey` writes and STI certificate authorities document)
//! or PKCS#8 (`PRIVATE KEY`, what `openssl genpkey` writes). Anything else is
//! refused with the reason an operator can act on: the curve it is on, the
//! kind of key it is, or what is wrong with the file.

use base64::Engine;

use super::der::{
    self, Reader, BIT_STRING, CONTEXT_0, CONTEXT_1, INTEGER, OCTET_STRING, OID, SEQUENCE,
};

/// The halves of a P-256 key as the signing library takes them.
pub(super) struct KeyParts {
    /// The private scalar, big-endian, 32 bytes.
    pub private: Vec<u8>,
    /// The public point, uncompressed SEC1 form (65 bytes), when the file has it.
    pub public: Option<Vec<u8>>,
}

const ID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Curves an operator may have by mistake, named so the error says which.
const OTHER_CURVES: &[(&[u8], &str)] = &[
    (&[0x2b, 0x81, 0x04, 0x00, 0x22], "P-384 (secp384r1)"),
    (&[0x2b, 0x81, 0x04, 0x00, 0x23], "P-521 (secp521r1)"),
    (&[0x2b, 0x81, 0x04, 0x00, 0x0a], "secp256k1"),
    (&[0x2b, 0x81, 0x04, 0x00, 0x21], "P-224 (secp224r1)"),
];

/// Finds the private key in `pem` text and returns its parts, or a reason
/// (without the file name, which the caller adds).
pub(super) fn parse(pem: &str) -> Result<KeyParts, String> {
    let mut found_labels = Vec::new();
    for (label, body) in pem_blocks(pem)? {
        match label {
            "EC PRIVATE KEY" => return sec1(&decode(body)?, None),
            "PRIVATE KEY" => return pkcs8(&decode(body)?),
            "ENCRYPTED PRIVATE KEY" => {
                return Err("the key is encrypted; write it unencrypted (openssl pkey -in KEY -out KEY.plain) and protect the file instead".into())
            }
            "RSA PRIVATE KEY" => return Err("an RSA key; ES256 needs an EC key on curve P-256".into()),
            other => found_labels.push(other),
        }
    }
    if found_labels.is_empty() {
        Err(
            "no PEM block (expected -----BEGIN EC PRIVATE KEY----- or -----BEGIN PRIVATE KEY-----)"
                .into(),
        )
    } else {
        Err(format!(
            "no private key in the file (found {}); expected EC PRIVATE KEY or PRIVATE KEY",
            found_labels.join(", ")
        ))
    }
}

/// `(label, base64 body)` of each `-----BEGIN …-----` block.
fn pem_blocks(text: &str) -> Result<Vec<(&str, &str)>, String> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let end_label = after.find("-----").ok_or("unterminated PEM BEGIN line")?;
        let label = &after[..end_label];
        let body_start = &after[end_label + 5..];
        let end_marker = format!("-----END {label}-----");
        let body_end = body_start
            .find(&end_marker)
            .ok_or_else(|| format!("PEM block {label} has no END line"))?;
        blocks.push((label, &body_start[..body_end]));
        rest = &body_start[body_end + end_marker.len()..];
    }
    Ok(blocks)
}

fn decode(body: &str) -> Result<Vec<u8>, String> {
    if body.contains(':') {
        return Err("the PEM block has headers (Proc-Type/DEK-Info): an encrypted legacy key; write it unencrypted (openssl ec -in KEY -out KEY.plain)".into());
    }
    let compact: String = body.split_ascii_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("PEM body is not base64: {e}"))
}

/// PKCS#8 PrivateKeyInfo (RFC 5958): algorithm must be id-ecPublicKey on
/// P-256; the ECPrivateKey sits in the octet string.
fn pkcs8(der_bytes: &[u8]) -> Result<KeyParts, String> {
    let bad = |why: &str| format!("not a PKCS#8 private key: {why}");
    let body = der::single(der_bytes, SEQUENCE, "expected a SEQUENCE").map_err(bad)?;
    let mut r = Reader::new(body);
    r.expect(INTEGER, "expected the version").map_err(bad)?;
    let algorithm = r.expect(SEQUENCE, "expected the algorithm").map_err(bad)?;
    let mut alg = Reader::new(algorithm);
    let oid = alg.expect(OID, "expected the algorithm OID").map_err(bad)?;
    if oid == RSA_ENCRYPTION {
        return Err("an RSA key; ES256 needs an EC key on curve P-256".into());
    }
    if oid == ED25519 {
        return Err("an Ed25519 key; ES256 needs an EC key on curve P-256".into());
    }
    if oid != ID_EC_PUBLIC_KEY {
        return Err("not an EC key; ES256 needs an EC key on curve P-256".into());
    }
    let curve = alg
        .optional(OID)
        .map_err(bad)?
        .ok_or_else(|| bad("the EC key names no curve"))?;
    check_curve(curve)?;
    let inner = r
        .expect(OCTET_STRING, "expected the private key")
        .map_err(bad)?;
    sec1(inner, Some(curve))
}

/// SEC1 ECPrivateKey (RFC 5915); `outer_curve` is the curve PKCS#8 named.
fn sec1(der_bytes: &[u8], outer_curve: Option<&[u8]>) -> Result<KeyParts, String> {
    let bad = |why: &str| format!("not an EC private key: {why}");
    let body = der::single(der_bytes, SEQUENCE, "expected a SEQUENCE").map_err(bad)?;
    let mut r = Reader::new(body);
    if r.expect(INTEGER, "expected the version").map_err(bad)? != [1] {
        return Err(bad("version is not 1"));
    }
    let private = r
        .expect(OCTET_STRING, "expected the private key")
        .map_err(bad)?;
    let params = r.optional(CONTEXT_0).map_err(bad)?;
    let curve = match params {
        Some(p) => Some(der::single(p, OID, "the parameters are not a named curve").map_err(bad)?),
        None => outer_curve,
    };
    match curve {
        Some(c) => check_curve(c)?,
        None => return Err(bad("the key names no curve")),
    }
    if private.len() != 32 {
        return Err(format!(
            "the private key is {} bytes, a P-256 key has 32",
            private.len()
        ));
    }
    let public = match r.optional(CONTEXT_1).map_err(bad)? {
        Some(p) => {
            let bits =
                der::single(p, BIT_STRING, "the public key is not a BIT STRING").map_err(bad)?;
            match bits.split_first() {
                Some((0, point)) if point.len() == 65 && point[0] == 4 => Some(point.to_vec()),
                _ => return Err(bad("the public key is not an uncompressed P-256 point")),
            }
        }
        None => None,
    };
    Ok(KeyParts {
        private: private.to_vec(),
        public,
    })
}

fn check_curve(oid: &[u8]) -> Result<(), String> {
    if oid == P256 {
        return Ok(());
    }
    let name = OTHER_CURVES
        .iter()
        .find(|(o, _)| *o == oid)
        .map_or("an unsupported curve", |(_, n)| n);
    Err(format!(
        "the key is on curve {name}; ES256 (SHAKEN) needs P-256 (prime256v1)"
    ))
}
