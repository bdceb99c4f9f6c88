//! One proptest configuration for every fuzz suite of the workspace.

use proptest::test_runner::Config;

/// The variable that sets how many cases each fuzz property runs.
pub const FUZZ_CASES_VAR: &str = "SWITCHBOARD_FUZZ_CASES";

/// The proptest configuration of a fuzz property: `default_cases` cases (chosen so that the
/// whole of `cargo test` stays quick), or `SWITCHBOARD_FUZZ_CASES` when set, for a long run such
/// as `SWITCHBOARD_FUZZ_CASES=1000000 cargo test --release fuzz_`. No failure file is written
/// into the source tree: a failing case is printed, shrunk, with its seed.
///
/// # Panics
/// When `SWITCHBOARD_FUZZ_CASES` is set but is not a whole number.
pub fn fuzz_config(default_cases: u32) -> Config {
    let cases = match std::env::var(FUZZ_CASES_VAR) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{FUZZ_CASES_VAR}={text:?} is not a whole number")),
        Err(_) => default_cases,
    };
    Config { cases, failure_persistence: None, max_shrink_iters: 4096, ..Config::default() }
}
