//! The generated resource documents both stepswitch benches use (`route.rs`, `compile_parts.rs`):
//! realistic NANP rate-centre and international rules, several per resource.

use std::time::Duration;

use serde_json::{json, Value};

/// CPU time of this thread: unlike wall time it excludes preemption, which dominates the tail
/// on a shared, loaded machine. (Not every bench that includes this module measures it.)
#[allow(dead_code)]
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// SplitMix64: deterministic pseudo-random numbers for the generator.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub fn npa_nxx(seed: u64) -> (u64, u64) {
    let h = mix(seed);
    (200 + h % 800, 200 + (h / 800) % 800)
}

/// Generated resources: realistic NANP rate-centre and international rules, several per
/// resource; one rule distinct per resource, others shared by groups of 4 and 8 resources,
/// plus five resources whose rules cannot be indexed (unanchored / lookaround).
pub fn generate(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let i = i as u64;
            let (npa, nxx) = npa_nxx(i);
            let (npa4, nxx4) = npa_nxx(1_000_000 + i / 4);
            let intl = (i / 8) % 100_000;
            let mut rules = vec![
                format!("^\\+1({npa}{nxx}\\d{{4}})$"),
                format!("^(?:\\+?1)?({npa}{nxx}\\d{{4}})$"),
                format!("^\\+1({npa4}{nxx4}\\d{{4}})$"),
                format!("^\\+(44{intl:05}\\d{{4,5}})$"),
            ];
            if i < 5 {
                rules.push(format!("{npa}{nxx}99$"));
                rules.push(format!("^\\+1(?!900)({npa}{nxx}98\\d\\d)$"));
            }
            let flags: Vec<&str> = if i.is_multiple_of(10) { vec!["fax"] } else { vec![] };
            json!({
                "_id": format!("{:032x}", mix(i ^ 0xABCD) as u128 * 0x1_0000_0001),
                "pvt_type": "resource",
                "name": format!("carrier {i}"),
                "weight_cost": 1 + (mix(i) % 50),
                "flags": flags,
                "rules": rules,
                "gateways": [
                    {"server": format!("gw{i}a.example.net"), "username": "u", "password": "p"},
                    {"server": format!("gw{i}b.example.net"), "port": 5080}
                ]
            })
        })
        .collect()
}
