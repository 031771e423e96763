//! STIR/SHAKEN signing: keys as operators make them (openssl), PASSporTs an
//! independent verifier (Debian's secsipidx) accepts, and clear refusals of
//! keys and settings that cannot work.

mod common;

use std::path::Path;

use cidgate::stir::{Attest, Claims, Destination, OrigId, Signer};
use common::binary::cidgate;
use common::stir::{decode_identity, openssl, p256_key, secsipidx_verify};

const X5U: &str = "https://certs.example.net/cidgate.pem";

fn claims() -> Claims {
    Claims {
        orig_tn: "14155550100".into(),
        dest: Destination::Tn("14155550199".into()),
        origid: OrigId::random(),
        attest: Attest::A,
        rcd_name: Some("Acme \"Sales\" Café".into()),
    }
}

#[test]
fn secsipidx_verifies_what_the_signer_signs() {
    let k = p256_key();
    let signer = Signer::from_pem_file(&k.key, X5U).unwrap();
    let c = claims();
    let iat = cidgate::stir::unix_now();
    let identity = signer.identity(&c, iat).unwrap();
    secsipidx_verify(&identity, &k.public).unwrap();

    let (header, payload, params) = decode_identity(&identity);
    assert_eq!(params, format!("info=<{X5U}>;alg=ES256;ppt=shaken"));
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["ppt"], "shaken");
    assert_eq!(header["typ"], "passport");
    assert_eq!(header["x5u"], X5U);
    assert_eq!(payload["orig"]["tn"], "14155550100");
    assert_eq!(payload["dest"]["tn"][0], "14155550199");
    assert_eq!(payload["attest"], "A");
    assert_eq!(payload["iat"], iat);
    assert_eq!(payload["origid"], c.origid.to_string());
    assert_eq!(payload["rcd"]["nam"], "Acme \"Sales\" Café");
}

#[test]
fn a_tampered_passport_fails_verification() {
    // Proves the verification above can fail: same key, altered claims.
    let k = p256_key();
    let signer = Signer::from_pem_file(&k.key, X5U).unwrap();
    let identity = signer
        .identity(&claims(), cidgate::stir::unix_now())
        .unwrap();
    let mut parts: Vec<String> = identity.splitn(3, '.').map(String::from).collect();
    let other = signer
        .identity(
            &Claims {
                orig_tn: "14155550101".into(),
                ..claims()
            },
            cidgate::stir::unix_now(),
        )
        .unwrap();
    parts[1] = other.split('.').nth(1).unwrap().to_string();
    let forged = parts.join(".");
    assert!(secsipidx_verify(&forged, &k.public).is_err());
    // And another key's public half does not verify the genuine one.
    let stranger = p256_key();
    assert!(secsipidx_verify(&identity, &stranger.public).is_err());
}

#[test]
fn pkcs8_keys_from_genpkey_work_too() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k8.pem");
    let public = dir.path().join("p8.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        key.to_str().unwrap(),
    ]);
    openssl(&[
        "pkey",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    let signer = Signer::from_pem_file(&key, X5U).unwrap();
    let identity = signer
        .identity(
            &Claims {
                dest: Destination::Uri("sip:support@example.com".into()),
                rcd_name: None,
                attest: Attest::C,
                ..claims()
            },
            cidgate::stir::unix_now(),
        )
        .unwrap();
    secsipidx_verify(&identity, &public).unwrap();
    let (_, payload, _) = decode_identity(&identity);
    assert_eq!(payload["dest"]["uri"][0], "sip:support@example.com");
    assert_eq!(payload["attest"], "C");
    assert!(payload.get("rcd").is_none());
}

/// The error for `file`, which must name the file and contain `reason`.
fn refused(file: &Path, reason: &str) {
    let err = Signer::from_pem_file(file, X5U).expect_err("key must be refused");
    let text = err.to_string();
    assert!(
        text.starts_with(&file.display().to_string()),
        "error names the file: {text}"
    );
    assert!(text.contains(reason), "error says {reason:?}: {text}");
}

#[test]
fn unusable_keys_are_refused_with_file_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n);

    refused(&path("missing.pem"), "cannot read the key");
    refused(dir.path(), "cannot read the key");

    // Keys openssl makes that are not P-256 keys we can use: (file, openssl
    // arguments before `-out`, what the error says).
    let unusable: [(&str, &[&str], &str); 5] = [
        (
            "p384.pem",
            &["ecparam", "-name", "secp384r1", "-genkey", "-noout"],
            "P-384",
        ),
        (
            "p384-8.pem",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
            ],
            "P-384",
        ),
        (
            "rsa.pem",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:1024",
            ],
            "RSA",
        ),
        ("ed.pem", &["genpkey", "-algorithm", "ED25519"], "Ed25519"),
        (
            "enc.pem",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-aes256",
                "-pass",
                "pass:secret",
            ],
            "encrypted",
        ),
    ];
    for (file, args, why) in unusable {
        let key = path(file);
        openssl(&[args, &["-out", key.to_str().unwrap()]].concat());
        refused(&key, why);
    }

    let garbage = path("garbage.pem");
    std::fs::write(&garbage, "this is not a key\n").unwrap();
    refused(&garbage, "no PEM block");
    let bad_b64 = path("bad64.pem");
    std::fs::write(
        &bad_b64,
        "-----BEGIN EC PRIVATE KEY-----\n!!!!\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    refused(&bad_b64, "not base64");
    let truncated = path("trunc.pem");
    std::fs::write(
        &truncated,
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    refused(&truncated, "EC private key");
    let cert_only = path("pub.pem");
    std::fs::copy(p256_key().public, &cert_only).unwrap();
    refused(&cert_only, "no private key in the file (found PUBLIC KEY)");
    let binary = path("key.der");
    std::fs::write(&binary, [0x30, 0x82, 0xff, 0xfe, 0x00]).unwrap();
    refused(&binary, "not a PEM file");
}

#[test]
fn certificate_url_must_be_https() {
    let k = p256_key();
    let pem = std::fs::read_to_string(&k.key).unwrap();
    for (x5u, why) in [
        ("", "empty"),
        ("http://certs.example.net/a.pem", "not an https URL"),
        ("https:///a.pem", "names no host"),
        ("https://c.example/a b.pem", "contains ' '"),
        ("https://c.example/a>.pem", "contains '>'"),
    ] {
        let err = Signer::from_pem(&pem, x5u).expect_err(x5u);
        assert!(err.contains(why), "{x5u:?}: {err}");
    }
    assert!(Signer::from_pem(&pem, "HTTPS://c.example/a.pem").is_ok());
}

/// A config with `[stir]` set to `stir` (TOML lines) next to a small inventory.
fn config_with(dir: &Path, stir: &str) -> String {
    std::fs::write(
        dir.join("queues.csv"),
        "queue_id,caller_id_number,caller_id_name,region\nsales,+14155550100,Acme Sales,US\nb,+14155550101,Bee,US\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("numbers.csv"),
        "number,region,attest\n+14155550100,,\n+14155550101,US,B\n",
    )
    .unwrap();
    let cfg = dir.join("cidgate.toml");
    std::fs::write(&cfg, format!("[server]\nadmin = \"\"\n\n[stir]\n{stir}\n")).unwrap();
    cfg.display().to_string()
}

#[test]
fn check_config_refuses_bad_keys_and_settings_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let good = p256_key();
    let p384 = dir.path().join("p384.pem");
    openssl(&[
        "ecparam",
        "-name",
        "secp384r1",
        "-genkey",
        "-noout",
        "-out",
        p384.to_str().unwrap(),
    ]);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN EC PRIVATE KEY-----\nnot a key\n").unwrap();
    let x5u = format!("x5u = \"{X5U}\"");
    let cases = [
        (
            format!("key = \"missing.pem\"\n{x5u}"),
            "missing.pem",
            "cannot read the key",
        ),
        (
            format!("key = \"{}\"\n{x5u}", p384.display()),
            "p384.pem",
            "P-384",
        ),
        (
            format!("key = \"{}\"\n{x5u}", garbage.display()),
            "garbage.pem",
            "no END line",
        ),
        (
            format!("key = \"{}\"\nx5u = \"\"", good.key.display()),
            "cidgate.toml:6",
            "x5u is empty",
        ),
        (
            format!(
                "key = \"{}\"\nx5u = \"http://c.example/a.pem\"",
                good.key.display()
            ),
            "cidgate.toml:6",
            "not an https URL",
        ),
        (
            format!("key = \"{}\"\n{x5u}\nattest = \"D\"", good.key.display()),
            "cidgate.toml:7",
            "attest",
        ),
        (
            format!("key = \"{}\"\n{x5u}\nsign = true", good.key.display()),
            "cidgate.toml:7",
            "unknown key `sign` in [stir]",
        ),
    ];
    for (stir, file, reason) in cases {
        let cfg = config_with(dir.path(), &stir);
        let (ok, out, err) = cidgate(&["check-config", &cfg]);
        assert!(!ok, "{stir}: must fail\n{out}");
        assert!(err.contains(file) && err.contains(reason), "{stir}: {err}");
    }
    let cfg = config_with(
        dir.path(),
        &format!("key = \"{}\"\n{x5u}\nrcd = true", good.key.display()),
    );
    let (ok, out, err) = cidgate(&["check-config", &cfg]);
    assert!(ok, "{err}");
    assert!(out.contains("stir: signing with"), "{out}");
}

#[test]
fn resolve_shows_the_claims_it_would_sign() {
    let dir = tempfile::tempdir().unwrap();
    let key = p256_key();
    let cfg = config_with(
        dir.path(),
        &format!(
            "key = \"{}\"\nx5u = \"{X5U}\"\nattest = \"A\"\nrcd = true",
            key.key.display()
        ),
    );
    let (ok, out, err) = cidgate(&["resolve", "--config", &cfg, "--queue", "sales"]);
    assert!(ok, "{err}");
    assert!(out.contains("orig.tn 14155550100"), "{out}");
    assert!(out.contains("attest A ([stir] default)"), "{out}");
    assert!(out.contains("rcd.nam \"Acme Sales\""), "{out}");
    assert!(out.contains(&format!("x5u {X5U}")), "{out}");
    // The numbers file's attest column wins over the default.
    let (_, out, _) = cidgate(&["resolve", "--config", &cfg, "--queue", "b"]);
    assert!(out.contains("attest B (numbers file)"), "{out}");
}

#[test]
fn run_refuses_to_start_with_an_unusable_key() {
    let dir = tempfile::tempdir().unwrap();
    let p384 = dir.path().join("p384.pem");
    openssl(&[
        "ecparam",
        "-name",
        "secp384r1",
        "-genkey",
        "-noout",
        "-out",
        p384.to_str().unwrap(),
    ]);
    let cfg = config_with(
        dir.path(),
        &format!("key = \"{}\"\nx5u = \"{X5U}\"", p384.display()),
    );
    let (ok, _, err) = cidgate(&["run", "--config", &cfg]);
    assert!(!ok);
    assert!(err.contains("p384.pem") && err.contains("P-384"), "{err}");
}
