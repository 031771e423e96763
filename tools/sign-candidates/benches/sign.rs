//! One ES256 signature over a typical SHAKEN signing input (base64url header
//! and claims, about 330 bytes), per candidate crate, from the same key.

use criterion::{black_box, criterion_group, criterion_main, Criterion};

const SIGNING_INPUT: &[u8] = b"eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly9jZXJ0cy5leGFtcGxlLm5ldC9jaWRnYXRlLnBlbSJ9.eyJhdHRlc3QiOiJBIiwiZGVzdCI6eyJ0biI6WyIxNDE1NTU1MDE5OSJdfSwiaWF0IjoxNzY0NjkxMjAwLCJvcmlnIjp7InRuIjoiMTQxNTU1NTAxMDAifSwib3JpZ2lkIjoiNmJhN2I4MTAtOWRhZC0xMWQxLTgwYjQtMDBjMDRmZDQzMGM4IiwicmNkIjp7Im5hbSI6IkFjbWUgU3VwcG9ydCJ9fQ";

fn pkcs8() -> Vec<u8> {
    let rng = ring::rand::SystemRandom::new();
    ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .expect("key generation")
    .as_ref()
    .to_vec()
}

fn candidates(c: &mut Criterion) {
    let der = pkcs8();
    let mut g = c.benchmark_group("es256_sign");

    {
        use p256::ecdsa::{signature::Signer, Signature, SigningKey};
        use p256::pkcs8::DecodePrivateKey;
        let key = SigningKey::from_pkcs8_der(&der).expect("p256 reads the key");
        g.bench_function("p256 0.13 (RustCrypto)", |b| {
            b.iter(|| {
                let s: Signature = key.sign(black_box(SIGNING_INPUT));
                s
            })
        });
    }
    {
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .expect("ring reads the key");
        g.bench_function("ring 0.17", |b| {
            b.iter(|| key.sign(&rng, black_box(SIGNING_INPUT)).expect("sign"))
        });
    }
    {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .expect("aws-lc-rs reads the key");
        g.bench_function("aws-lc-rs 1", |b| {
            b.iter(|| key.sign(&rng, black_box(SIGNING_INPUT)).expect("sign"))
        });
    }
    g.finish();
}

criterion_group!(benches, candidates);
criterion_main!(benches);
