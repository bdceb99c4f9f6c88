//! The numbers the carriers offered in recent searches, kept for buying (Kazoo keeps its search
//! hits in a cache too, `knm_search`): a number found by `GET /v2/phone_numbers?prefix=…` or an
//! account's search and then activated has no document yet; its hit (module, carrier data)
//! becomes the `discovery` document the move starts from. Bounded: the oldest hits are
//! forgotten first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use numbers::carriers::FoundNumber;

/// How many hits are kept.
const CAPACITY: usize = 10_000;

/// Recent search hits by number.
#[derive(Default)]
pub(crate) struct Discovered {
    inner: Mutex<Hits>,
}

#[derive(Default)]
struct Hits {
    by_number: HashMap<String, FoundNumber>,
    order: VecDeque<String>,
}

impl Discovered {
    /// Keeps `hits` (the newest of a number replaces an older one).
    pub(crate) fn remember(&self, hits: &[FoundNumber]) {
        let mut inner = self.inner.lock().expect("discovered lock");
        for hit in hits {
            let key = hit.number.as_str().to_owned();
            if inner.by_number.insert(key.clone(), hit.clone()).is_none() {
                inner.order.push_back(key);
            }
        }
        while inner.order.len() > CAPACITY {
            if let Some(old) = inner.order.pop_front() {
                inner.by_number.remove(&old);
            }
        }
    }

    /// The hit for `number`, if a recent search offered it.
    pub(crate) fn get(&self, number: &str) -> Option<FoundNumber> {
        self.inner.lock().expect("discovered lock").by_number.get(number).cloned()
    }
}

#[cfg(test)]
mod tests {
    use numbers::{CarrierKind, NumberState};

    use super::*;

    fn hit(number: &str) -> FoundNumber {
        FoundNumber {
            number: e164::E164::new(number).unwrap(),
            module: CarrierKind::from_module("knm_managed").unwrap(),
            state: NumberState::Discovery,
            carrier_data: serde_json::Map::new(),
        }
    }

    #[test]
    fn remembers_the_newest_hits_within_capacity() {
        let discovered = Discovered::default();
        discovered.remember(&[hit("+14152220001")]);
        assert_eq!(discovered.get("+14152220001"), Some(hit("+14152220001")));
        assert_eq!(discovered.get("+14152220002"), None);
        let many: Vec<FoundNumber> =
            (0..CAPACITY as u64 + 1).map(|n| hit(&format!("+1415{:07}", n))).collect();
        discovered.remember(&many);
        assert_eq!(discovered.get("+14152220001"), None, "the oldest is forgotten");
        assert!(discovered.get(&format!("+1415{:07}", CAPACITY)).is_some());
    }
}
