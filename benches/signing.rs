//! What one signed call costs the signing thread: building the SHAKEN
//! PASSporT and its ES256 signature (`Signer::identity`), with the key an
//! operator makes with openssl. The gateway's own figure for signing (CPU per
//! call with and without `[stir]`, scripts/compare.sh --stir) is this plus
//! the hand-off between the core and the signing thread; the difference is
//! what that hand-off costs.

use std::hint::black_box;
use std::process::Command;

use cidgate::stir::{Attest, Claims, Destination, OrigId, Signer};
use criterion::{criterion_group, criterion_main, Criterion};

/// The allocator the `cidgate` binary runs with, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const X5U: &str = "https://certs.example.net/cidgate.pem";

/// A P-256 key as `openssl ecparam -genkey` writes it (the documented way).
fn signer() -> Option<Signer> {
    let dir = tempfile::tempdir().ok()?;
    let key = dir.path().join("key.pem");
    let made = Command::new("openssl")
        .args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
        ])
        .arg(&key)
        .status()
        .ok()?;
    if !made.success() {
        return None;
    }
    Signer::from_pem_file(&key, X5U).ok()
}

fn signing(c: &mut Criterion) {
    let Some(signer) = signer() else {
        eprintln!("signing bench skipped: openssl could not make a P-256 key");
        return;
    };
    let claims = Claims {
        orig_tn: "14155550100".into(),
        dest: Destination::Tn("14155550199".into()),
        origid: OrigId::random(),
        attest: Attest::A,
        rcd_name: Some("Acme Support".into()),
    };
    let iat = cidgate::stir::unix_now();
    c.bench_function("stir/identity_es256", |b| {
        b.iter(|| signer.identity(black_box(&claims), iat).unwrap())
    });
}

criterion_group!(benches, signing);
criterion_main!(benches);
