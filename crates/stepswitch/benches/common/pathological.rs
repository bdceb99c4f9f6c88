//! The 100 pathological resources of the hostile-rule benchmarks (`hostile.rs` here,
//! `crates/switchboard/benches/route_http.rs` end to end), one rule each, every one reached by
//! every `+` number: 25 catastrophic (refused at compile time), 25 over the backtracking budget
//! on long numbers (quarantined on first use), 25 that exhaust the simple matcher (handed to
//! the linear-time engine), 25 large counted repetitions (linear time, large automata).

use serde_json::{json, Value};

pub fn pathological() -> Vec<Value> {
    (0..100)
        .map(|i| {
            let k = i % 25 + 1;
            let rule = match i / 25 {
                0 => format!("^\\+(?=\\d)((\\d+)+)+\\2x{{{k}}}$"),
                1 => format!("^\\+(\\d|\\d\\d|\\d\\d\\d)*(?=x{{{k}}})y"),
                2 => format!("^\\+\\d*\\d*\\d*\\d*\\d*\\d*\\d*x{{{k}}}$"),
                _ => format!("^\\+(\\d{{1,9}}){{1,9}}z{{{k}}}$"),
            };
            json!({"_id": format!("evil-{i:03}"), "pvt_type": "resource", "rules": [rule],
                   "gateways": [{"server": format!("evil{i}.example.com")}]})
        })
        .collect()
}
