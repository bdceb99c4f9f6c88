use e164::Pattern;

use super::*;

fn prefixes(source: &str) -> Option<Vec<String>> {
    let pattern = SimplePattern::parse(source).expect("in subset");
    pattern.prefixes().map(|set| set.into_iter().map(|it| String::from_utf8(it).unwrap()).collect())
}

#[test]
fn subset_and_prefixes() {
    assert_eq!(prefixes(r"^\+1(415\d{7})$"), Some(vec!["+1415".into()]));
    assert_eq!(
        prefixes(r"^(?:\+?1)?(415)"),
        Some(vec!["+1415".into(), "1415".into(), "415".into()])
    );
    assert_eq!(prefixes(r"5550100$"), None);
    for outside in [r"^\+1(?!900)\d", r"^(\d+)+$", r"^a|b", r"(?i)^a", r"^\w", r"^a++"] {
        assert!(SimplePattern::parse(outside).is_none(), "{outside}");
    }
}

#[test]
fn captures_equal_the_regex_engine() {
    // Differential check against the regex crate on a grid of patterns and inputs.
    let patterns = [
        r"^\+1(\d{10})$",
        r"^(\+?1)?([2-9][0-9]{2}[2-9][0-9]{6})$",
        r"^\+1",
        r"^011(\d{5,})$|^00(\d{5,})$",
        r"^(?:\+?1)?(415\d{7})$",
        r"^\+(44(?:20|11)\d{4,5})$",
        r"(\d{3})(\d*)$",
        r"^(\d+?)(\d{4})$",
        r"^\+1(8(?:00|88|77))(\d{7})$",
        r"^(a)?()b",
        r"^[^5]\d*",
        r"^\+?1?(\d{10})$",
        r"^(91[01])$",
        r"^.(.)",
        r"^\+44(\d{9,10})$",
        r"^(1|12)(2?)3$",
        r"^(\d{2}|\d{3})(\d{2})$",
        r"^(\d*?)(\d{2,}?)$",
        r"^([0-4]+)([5-9ab]*)",
        r"(\+)?(1)?(\d{3})?$",
        r"^(?:(\d)(\d))?(\d+)$",
        r"a(b?)",
    ];
    let inputs = [
        "+14155550100",
        "14155550100",
        "4155550100",
        "011442071234567",
        "0044207123",
        "+442071234",
        "+4411123456",
        "+18005550100",
        "b",
        "ab",
        "911",
        "910",
        "5551234",
        "123",
        "1223",
        "12223",
        "+1",
        "",
        "1234",
        "12345",
    ];
    for source in patterns {
        let simple = SimplePattern::parse(source);
        let Some(simple) = simple else {
            // Top-level alternation is deliberately outside the subset.
            assert!(source.contains("$|^"), "{source} should be in the subset");
            continue;
        };
        let reference = Pattern::new(source).unwrap();
        for input in inputs {
            assert_eq!(simple.captures(input), reference.captures(input), "{source} on {input:?}");
        }
        // Plus pseudo-random strings over the alphabet these rules care about.
        let alphabet = b"+0123456789ab";
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 15) as usize;
            let input: String = (0..len)
                .map(|k| alphabet[((state >> (k * 4)) % alphabet.len() as u64) as usize] as char)
                .collect();
            assert_eq!(
                simple.captures(&input),
                reference.captures(&input),
                "{source} on {input:?}"
            );
        }
    }
}
