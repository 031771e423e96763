//! Deterministic data for the benches: valid E.164 numbers, queue rows and
//! inventories of any size.
//!
//! Numbers are produced by an injective function of their index instead of
//! "random and deduplicate", so a million distinct numbers need neither a
//! set nor a second pass, and the n-th claimed number can be recomputed
//! anywhere (the queue file and the lookup inputs refer to it by index).
#![allow(dead_code)]

pub mod calls;

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use cidgate::inventory::{Inventory, Region};

/// US area codes that libphonenumber accepts as geographic (long-established
/// NPAs, the same set as `scripts/gen_lab.py`; NPAs starting with 1 and
/// unassigned ones would make the inventory load refuse the file).
const US_NPA: &[u16] = &[
    201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219, 224, 225,
    228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262, 267, 269, 270, 276, 281,
    301, 302, 303, 304, 305, 307, 308, 309, 310, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321,
    323, 325, 330, 334, 336, 337, 339, 347, 351, 352, 360, 361, 386, 401, 402, 404, 405, 406, 407,
    408, 409, 410, 412, 413, 414, 415, 417, 419, 423, 424, 425, 432, 434, 435, 440, 443, 469, 478,
    479, 480, 484, 501, 502, 503, 504, 505, 507, 508, 509, 510, 512, 513, 515, 516, 517, 518, 520,
    530, 540, 541, 551, 559, 561, 562, 563, 567, 570, 571, 573, 574, 580, 585, 586, 601, 602, 603,
    605, 606, 607, 608, 609, 610, 612, 614, 615, 616, 617, 618, 619, 620, 623, 626, 630, 631, 636,
    641, 646, 650, 651, 660, 661, 662, 678, 682, 701, 702, 703, 704, 706, 707, 708, 712, 713, 714,
    715, 716, 717, 718, 719, 720, 724, 727, 731, 732, 734, 740, 754, 757, 760, 763, 765, 770, 772,
    773, 774, 775, 781, 785, 786, 801, 802, 803, 804, 805, 806, 808, 810, 812, 813, 814, 815, 816,
    817, 818, 828, 830, 831, 832, 843, 845, 847, 848, 850, 856, 857, 858, 859, 860, 862, 863, 864,
    865, 870, 901, 903, 904, 906, 907, 908, 909, 910, 912, 913, 914, 915, 916, 917, 918, 919, 920,
    925, 928, 931, 936, 937, 940, 941, 947, 949, 952, 954, 956, 970, 971, 972, 973, 978, 979, 980,
    985, 989,
];

/// GB prefixes after +44 that are valid with a 10-digit national number:
/// London 20 3/7/8 and mobile ranges (the drama range 7700 900 is excluded).
const GB_PREFIX: &[&str] = &[
    "203", "207", "208", "7400", "7401", "7402", "7403", "7404", "7410", "7420", "7430", "7440",
    "7800", "7801", "7810", "7900", "7901",
];

/// Exchange codes valid in NANP: 200-999 without N11 and 555 (libphonenumber
/// rejects the 555 fiction range for most NPAs).
fn nxx_table() -> Vec<u16> {
    (200..1000).filter(|n| n % 100 != 11 && *n != 555).collect()
}

/// The `i`-th US number. Injective for `i` below NPA × NXX × 10 000: the NPA
/// varies fastest (so consecutive numbers spread over the hash table the way
/// real inventories do), the line number is scrambled by a unit mod 10 000.
pub fn us_number(i: u64) -> String {
    thread_local! {
        static NXX: Vec<u16> = nxx_table();
    }
    let npa = US_NPA[(i % US_NPA.len() as u64) as usize];
    let rest = i / US_NPA.len() as u64;
    NXX.with(|nxx| {
        let exch = nxx[(rest % nxx.len() as u64) as usize];
        let line = ((rest / nxx.len() as u64) * 7919 + 1234) % 10_000;
        format!("+1{npa}{exch}{line:04}")
    })
}

/// The `i`-th GB number (London or mobile). Injective for `i` below
/// 17 × 1 000 000.
pub fn gb_number(i: u64) -> String {
    let p = GB_PREFIX[(i % GB_PREFIX.len() as u64) as usize];
    let rest = i / GB_PREFIX.len() as u64;
    let width = 10 - p.len();
    let modulus = 10u64.pow(width as u32);
    // a unit mod 10^width scrambles the subscriber part without collisions
    let sub = (rest * 7919 + 4321) % modulus;
    format!("+44{p}{sub:0width$}")
}

/// The `i`-th claimed number: three in four US, one in four GB, as in the
/// lab data. The two streams use disjoint index ranges, so all are distinct.
pub fn claimed_number(i: u64) -> (String, &'static str) {
    if i % 4 == 3 {
        (gb_number(i / 4), "GB")
    } else {
        (us_number(3 * (i / 4) + i % 4), "US")
    }
}

/// A valid number that is never claimed (index space far above any
/// inventory used here).
pub fn unclaimed_number(i: u64) -> String {
    us_number(50_000_000 + i)
}

/// National dialling form of a number made here, as an operator would
/// write it in the numbers file.
pub fn national(e164: &str) -> String {
    if let Some(d) = e164.strip_prefix("+1") {
        format!("({}) {}-{}", &d[..3], &d[3..6], &d[6..])
    } else {
        let d = format!("0{}", &e164[3..]);
        if d.starts_with("02") {
            format!("{} {} {}", &d[..3], &d[3..7], &d[7..])
        } else {
            format!("{} {}", &d[..5], &d[5..])
        }
    }
}

pub fn queue_id(i: u64) -> String {
    format!("q{i:06}")
}

const DEPTS: &[&str] = &[
    "Sales",
    "Support",
    "Billing",
    "Collections",
    "Retention",
    "Claims",
    "Dispatch",
    "Care",
];

/// Queue `i`: number = claimed number `i` except every 20th queue, which has
/// none (its calls are rejected).
pub fn queue_row(i: u64) -> (String, Option<String>, String, &'static str) {
    let (number, region) = claimed_number(i);
    let number = (i % 20 != 13).then_some(number);
    let name = format!("{} {}", DEPTS[(i % DEPTS.len() as u64) as usize], i);
    (queue_id(i), number, name, region)
}

/// How numbers are written in the numbers file.
#[derive(Clone, Copy, Debug)]
pub enum NumberForm {
    /// Every number in E.164: the loader's fast path.
    E164,
    /// Every 20th number in national form, like the lab data: those go
    /// through libphonenumber.
    LabMix,
}

/// Writes `queues.csv` and `numbers.csv` into `dir`.
pub fn write_inventory(
    dir: &Path,
    queues: u64,
    numbers: u64,
    form: NumberForm,
) -> (PathBuf, PathBuf) {
    assert!(numbers >= queues, "every queue number must be claimed");
    let qpath = dir.join("queues.csv");
    let npath = dir.join("numbers.csv");
    let mut n = BufWriter::new(std::fs::File::create(&npath).unwrap());
    writeln!(n, "number,region").unwrap();
    for i in 0..numbers {
        let (e164, region) = claimed_number(i);
        match form {
            NumberForm::LabMix if i % 20 == 7 => {
                let nat = national(&e164);
                writeln!(n, "\"{nat}\",{region}").unwrap();
            }
            _ => writeln!(n, "{e164},{region}").unwrap(),
        }
    }
    n.flush().unwrap();
    let mut q = BufWriter::new(std::fs::File::create(&qpath).unwrap());
    writeln!(
        q,
        "queue_id,caller_id_number,caller_id_name,region,anonymous"
    )
    .unwrap();
    let mut line = String::new();
    for i in 0..queues {
        let (id, number, name, region) = queue_row(i);
        line.clear();
        let _ = writeln!(
            line,
            "{id},{},{name},{region},false",
            number.as_deref().unwrap_or("")
        );
        q.write_all(line.as_bytes()).unwrap();
    }
    q.flush().unwrap();
    (qpath, npath)
}

/// The same inventory built in memory through the builder API.
pub fn build_inventory(queues: u64, numbers: u64) -> Inventory {
    let us = Region::parse("US").unwrap();
    let gb = Region::parse("GB").unwrap();
    let mut b = Inventory::builder(us);
    for i in 0..numbers {
        b.add_number(&claimed_number(i).0).unwrap();
    }
    for i in 0..queues {
        let (id, number, name, region) = queue_row(i);
        let region = if region == "GB" { gb } else { us };
        b.add_queue(&id, number.as_deref(), &name, Some(region), false)
            .unwrap();
    }
    b.build().unwrap()
}

/// `VmRSS` and `VmHWM` of this process in KiB (Linux only).
pub fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// A small deterministic PRNG (SplitMix64) so input order is the same on
/// every run and machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
