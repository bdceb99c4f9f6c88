//! The number document as Kazoo 4.3 stores it (`knm_phone_number`'s document), its states (Kazoo's number states), the number-database names
//! (`knm_converters:to_db/1`); reading stored documents with the load-time migration of older versions (`knm_phone_number:from_json/1`) is in
//! `migrate`.
//!
//! Mirrors `knm_phone_number.erl` (`from_json/1`, `to_json/1`, `to_public_json/1` and the setters
//! that decide what is "dirty"). Pure: the current time is a parameter, in Gregorian seconds as
//! Kazoo stores it.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use e164::E164;

use crate::account::AccountId;
use crate::error::Error;

mod migrate;

use migrate::is_local_module;
pub use migrate::migrate_module_name;
pub(crate) use migrate::{doc_from_public_fields, non_empty};

/// Seconds between 0000-01-01 (Kazoo's Gregorian epoch) and 1970-01-01.
pub const GREGORIAN_UNIX_OFFSET: i64 = 62_167_219_200;

/// Converts a Unix timestamp (seconds) to Kazoo's Gregorian seconds (`kz_time:now_s/0`).
pub fn gregorian_seconds(unix_seconds: i64) -> i64 {
    unix_seconds + GREGORIAN_UNIX_OFFSET
}

/// The carrier module of numbers that are local to the system (`?CARRIER_LOCAL`).
pub const KNM_LOCAL: &str = "knm_local";
/// The carrier module of mobile (MDN) numbers (`?CARRIER_MDN`).
pub const KNM_MDN: &str = "knm_mdn";
/// The unencoded database of `knm_managed` numbers (`numbers%2Fmanaged`).
pub const MANAGED_DB: &str = "numbers/managed";
/// The unencoded database of `knm_inum` numbers (`numbers%2Finum`).
pub const INUM_DB: &str = "numbers/inum";

/// Private keys Kazoo reads or used to write and that it drops on the next write (`knm_phone_number:to_json/1`). Any other
/// unknown `pvt_*` / `_*` key is kept (see `docs/kazoo-compat.md`).
const DROPPED_PRIVATE_KEYS: &[&str] = &[
    "pvt_authorizing_account",
    "pvt_features_available",
    "pvt_resource_db",
    "pvt_is_billable",
    "pvt_number_state",
];

/// Keys `to_json/1` writes itself (never copied from `extra`).
const OWN_KEYS: &[&str] = &[
    "_id",
    "_rev",
    "pvt_db_name",
    "pvt_state",
    "pvt_ported_in",
    "pvt_module_name",
    "pvt_modified",
    "pvt_created",
    "pvt_type",
    "pvt_assigned_to",
    "pvt_previously_assigned_to",
    "pvt_used_by",
    "pvt_features",
    "pvt_features_allowed",
    "pvt_features_denied",
    "pvt_reserve_history",
    "pvt_carrier_data",
    "pvt_region",
];

/// The nine values of `pvt_state` (`knm_phone_number:is_state/1`, `knm_phone_number:is_state/1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NumberState {
    /// Found by a carrier search, not yet bought.
    Discovery,
    /// Being ported in.
    PortIn,
    /// Being ported out (internal).
    PortOut,
    /// In the system's pool, unassigned.
    Available,
    /// Assigned to an account but not in use.
    Reserved,
    /// Assigned and in use.
    InService,
    /// Optional hold state after release (`released_state = released`).
    Released,
    /// Quarantine after release (`should_age`).
    Aging,
    /// In-memory marker of a hard delete; never saved.
    Deleted,
}

impl NumberState {
    /// Every state, in Kazoo's declaration order.
    pub const ALL: [NumberState; 9] = [
        NumberState::Discovery,
        NumberState::PortIn,
        NumberState::PortOut,
        NumberState::Available,
        NumberState::Reserved,
        NumberState::InService,
        NumberState::Released,
        NumberState::Aging,
        NumberState::Deleted,
    ];

    /// Kazoo's spelling (`in_service`, `port_in`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            NumberState::Discovery => "discovery",
            NumberState::PortIn => "port_in",
            NumberState::PortOut => "port_out",
            NumberState::Available => "available",
            NumberState::Reserved => "reserved",
            NumberState::InService => "in_service",
            NumberState::Released => "released",
            NumberState::Aging => "aging",
            NumberState::Deleted => "deleted",
        }
    }
}

impl fmt::Display for NumberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NumberState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NumberState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::Invalid { reason: format!("'{s}' is not a number state") })
    }
}

/// The unencoded number database of a normalized number (`knm_converters:to_db/1` `knm_converters:to_db/1`):
/// `numbers/` + the first 5 bytes (`+14158867900` → `numbers/+1415`). `None` under 5 bytes (or
/// when that is no valid database name). The naming itself is docstore's
/// ([`docstore::naming::numbers_db`]).
pub fn number_db(number: &str) -> Option<String> {
    docstore::naming::numbers_db(number).map(|db| db.as_str().to_owned())
}

/// The URL-encoded number database as Kazoo writes it in `pvt_db_name` (`numbers%2F%2B1415`).
pub fn encoded_number_db(number: &str) -> Option<String> {
    e164::to_db(number)
}

/// A phone-number document (`knm_phone_number` record), typed.
///
/// Fields are Kazoo's (`knm_phone_number:to_json/1`). Public (non-`_`, non-`pvt_`) fields live in [`NumberDoc::public`];
/// unknown private fields are kept in [`NumberDoc::extra`] and written back.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberDoc {
    /// `_id`: the normalized number.
    pub id: E164,
    /// `_rev` in the number database, if the document was loaded.
    pub rev: Option<String>,
    /// `pvt_state`.
    pub state: NumberState,
    /// `pvt_ported_in`.
    pub ported_in: bool,
    /// `pvt_module_name`: the carrier module (`knm_local`, `knm_telnyx`, …).
    pub module_name: String,
    /// `pvt_modified` (Gregorian seconds).
    pub modified: i64,
    /// `pvt_created` (Gregorian seconds).
    pub created: i64,
    /// `pvt_assigned_to`: the owner.
    pub assigned_to: Option<AccountId>,
    /// `pvt_previously_assigned_to`.
    pub prev_assigned_to: Option<AccountId>,
    /// `pvt_used_by`: the app using the number.
    pub used_by: Option<String>,
    /// `pvt_features`: feature name → data.
    pub features: Map<String, Value>,
    /// `pvt_features_allowed`.
    pub features_allowed: Vec<String>,
    /// `pvt_features_denied`.
    pub features_denied: Vec<String>,
    /// `pvt_reserve_history`, newest first.
    pub reserve_history: Vec<AccountId>,
    /// `pvt_carrier_data`.
    pub carrier_data: Map<String, Value>,
    /// `pvt_region`.
    pub region: Option<String>,
    /// Public fields (minus `id` and `used_by`, `knm_phone_number:to_json/1`).
    pub public: Map<String, Value>,
    /// Unknown private (`pvt_*`, `_*`) fields, kept across writes.
    pub extra: Map<String, Value>,
    /// Set by [`NumberDoc::from_json`] when the stored document needed a migration (`knm_phone_number:from_json/1`): the
    /// next decision writes it even if nothing else changes.
    migrated: bool,
}

/// Whether a key is private in Kazoo's sense (`kz_doc:is_private_key/1`).
pub fn is_private_key(key: &str) -> bool {
    key.starts_with('_') || key.starts_with("pvt_")
}

/// `sanitize_public_fields/1`: the public fields minus `id` and `used_by`.
pub fn sanitize_public_fields(obj: &Map<String, Value>) -> Map<String, Value> {
    obj.iter()
        .filter(|(k, _)| !is_private_key(k) && k.as_str() != "id" && k.as_str() != "used_by")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl NumberDoc {
    /// A new, never-saved record (`knm_phone_number:new/1`): no owner, empty history, created and
    /// modified `now`. The `local` feature is set for `knm_local` / `knm_mdn` (`knm_phone_number:set_module_name/2`).
    pub fn new(number: &E164, state: NumberState, module_name: &str, now: i64) -> Self {
        let mut features = Map::new();
        if is_local_module(module_name) {
            features.insert("local".into(), Value::Object(Map::new()));
        }
        NumberDoc {
            id: number.clone(),
            rev: None,
            state,
            ported_in: false,
            module_name: module_name.to_owned(),
            modified: now,
            created: now,
            assigned_to: None,
            prev_assigned_to: None,
            used_by: None,
            features,
            features_allowed: Vec::new(),
            features_denied: Vec::new(),
            reserve_history: Vec::new(),
            carrier_data: Map::new(),
            region: None,
            public: Map::new(),
            extra: Map::new(),
            migrated: false,
        }
    }

    /// Whether loading this document applied a migration that must be written back (`knm_phone_number`'s dirty tracking, `knm_phone_number:from_json/1`).
    pub fn migrated(&self) -> bool {
        self.migrated
    }

    /// Clears the migration mark (after the migrated document was written).
    pub fn clear_migrated(&mut self) {
        self.migrated = false;
    }

    /// Whether the two documents carry the same content, ignoring `pvt_modified`, `_rev` and the
    /// migration mark: the dirty test of `knm_phone_number`'s dirty tracking.
    pub fn same_content(&self, other: &NumberDoc) -> bool {
        let mut a = self.clone();
        a.modified = other.modified;
        a.rev.clone_from(&other.rev);
        a.migrated = other.migrated;
        &a == other
    }

    /// Whether the carrier module is `knm_mdn`.
    pub fn is_mdn(&self) -> bool {
        self.module_name == KNM_MDN
    }

    /// Whether the carrier module is `knm_local` or `knm_mdn`.
    pub fn is_local_or_mdn(&self) -> bool {
        is_local_module(&self.module_name)
    }

    /// The unencoded number database (`numbers/+1415`) (`knm_converters:to_db/1`), or `None` for ids under 5 bytes.
    pub fn db(&self) -> Option<String> {
        number_db(self.id.as_str())
    }

    /// `set_assigned_to/2`: a change moves the old owner to `prev_assigned_to` and clears `used_by`.
    pub fn set_assigned_to(&mut self, new: Option<AccountId>) {
        if self.assigned_to == new {
            return;
        }
        if let Some(old) = self.assigned_to.take() {
            self.prev_assigned_to = Some(old);
        }
        self.assigned_to = new;
        self.used_by = None;
    }

    /// `add_reserve_history/2` (`knm_number_states:push_reserve_history/1`): prepend unless it is already the head.
    pub fn push_reserve_history(&mut self, account: &AccountId) {
        if self.reserve_history.first() != Some(account) {
            self.reserve_history.insert(0, account.clone());
        }
    }

    /// `set_module_name/2` after load (`knm_phone_number:set_module_name/2`): migrates legacy names; `knm_local` / `knm_mdn` add
    /// the `local` feature, any other module removes it.
    pub fn set_module_name(&mut self, name: &str) {
        let (name, _) = migrate_module_name(name);
        if is_local_module(&name) {
            self.features.entry("local").or_insert_with(|| Value::Object(Map::new()));
        } else {
            self.features.remove("local");
        }
        self.module_name = name;
    }

    /// `set_doc/2`: replaces the public fields (private and `id`/`used_by` keys are ignored, legacy
    /// e911 keys copied to `e911`).
    pub fn replace_public(&mut self, fields: &Map<String, Value>) {
        self.public = doc_from_public_fields(fields);
    }

    /// `update_doc/2`: merges public fields into the current ones (objects merged recursively, a
    /// `null` removes the key).
    pub fn merge_public(&mut self, fields: &Map<String, Value>) {
        let mut merged = self.public.clone();
        merge_into(&mut merged, &sanitize_public_fields(fields));
        self.public = doc_from_public_fields(&merged);
    }

    /// `reset_features/1` (`knm_numbers:release/2` step 4): `{local: …}` for local/MDN numbers, `{}` otherwise.
    pub fn reset_features(&mut self) {
        let local = self.features.get("local").cloned();
        self.features = Map::new();
        if self.is_local_or_mdn() {
            self.features
                .insert("local".into(), local.unwrap_or_else(|| Value::Object(Map::new())));
        }
    }

    /// The sorted list of feature names (`features_list/1`).
    pub fn features_list(&self) -> Vec<String> {
        let mut list: Vec<String> = self.features.keys().cloned().collect();
        list.sort();
        list.dedup();
        list
    }

    /// The stored JSON (`to_json/1`, `knm_phone_number:to_json/1`), in Kazoo's key order: `_id`, `pvt_db_name`,
    /// `pvt_state`, `pvt_ported_in`, `pvt_module_name`, `pvt_modified`, `pvt_created`, `pvt_type`,
    /// the public fields, then the fields that are only written when non-empty, then kept unknown
    /// private fields. This same JSON is the account-database copy (`knm_numbers:save_numbers/1`) with that database's own
    /// `_rev`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("_id".into(), Value::from(self.id.as_str()));
        let db = encoded_number_db(self.id.as_str()).unwrap_or_default();
        m.insert("pvt_db_name".into(), Value::from(db));
        m.insert("pvt_state".into(), Value::from(self.state.as_str()));
        m.insert("pvt_ported_in".into(), Value::from(self.ported_in));
        m.insert("pvt_module_name".into(), Value::from(self.module_name.clone()));
        m.insert("pvt_modified".into(), Value::from(self.modified));
        m.insert("pvt_created".into(), Value::from(self.created));
        m.insert("pvt_type".into(), Value::from("number"));
        for (k, v) in &self.public {
            m.insert(k.clone(), v.clone());
        }
        if let Some(rev) = &self.rev {
            m.insert("_rev".into(), Value::from(rev.clone()));
        }
        if let Some(a) = &self.assigned_to {
            m.insert("pvt_assigned_to".into(), Value::from(a.as_str()));
        }
        if let Some(a) = &self.prev_assigned_to {
            m.insert("pvt_previously_assigned_to".into(), Value::from(a.as_str()));
        }
        if let Some(u) = &self.used_by {
            m.insert("pvt_used_by".into(), Value::from(u.clone()));
        }
        if !self.features.is_empty() {
            m.insert("pvt_features".into(), Value::Object(self.features.clone()));
        }
        if !self.features_allowed.is_empty() {
            m.insert("pvt_features_allowed".into(), Value::from(self.features_allowed.clone()));
        }
        if !self.features_denied.is_empty() {
            m.insert("pvt_features_denied".into(), Value::from(self.features_denied.clone()));
        }
        if !self.reserve_history.is_empty() {
            let h: Vec<Value> =
                self.reserve_history.iter().map(|a| Value::from(a.as_str())).collect();
            m.insert("pvt_reserve_history".into(), Value::Array(h));
        }
        if !self.carrier_data.is_empty() {
            m.insert("pvt_carrier_data".into(), Value::Object(self.carrier_data.clone()));
        }
        if let Some(r) = &self.region {
            m.insert("pvt_region".into(), Value::from(r.clone()));
        }
        for (k, v) in &self.extra {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Value::Object(m)
    }

    /// The copy written into the owner's account database (`knm_numbers:save_numbers/1`, `knm_phone_number:save/1`'s account-db copy): the same JSON as
    /// [`NumberDoc::to_json`] but with that database's own `_rev` (`None` = the copy does not
    /// exist yet).
    pub fn to_account_copy_json(&self, account_db_rev: Option<&str>) -> Value {
        let mut v = self.to_json();
        if let Value::Object(m) = &mut v {
            match account_db_rev {
                Some(rev) => {
                    m.insert("_rev".into(), Value::from(rev));
                }
                None => {
                    m.remove("_rev");
                }
            }
        }
        v
    }

    /// The public JSON (`to_public_json/1`, `knm_phone_number:to_public_json/1`): public fields + `id`, `state`, `used_by`,
    /// `features` (sorted names), and `_read_only {created, modified, state, used_by, features,
    /// carrier_module}` with empty values omitted.
    ///
    /// `_read_only.features_available` depends on the requester and the reseller's config: use
    /// [`NumberDoc::to_public_json_with_features`] with `features::available_features` to
    /// include it; this form omits it.
    pub fn to_public_json(&self) -> Value {
        self.public_json(None)
    }

    /// [`NumberDoc::to_public_json`] with `_read_only.features_available` (`knm_phone_number:to_public_json/1`, `knm_providers:list_available_features/1`).
    pub fn to_public_json_with_features(&self, features_available: &[String]) -> Value {
        self.public_json(Some(features_available))
    }

    fn public_json(&self, features_available: Option<&[String]>) -> Value {
        let mut root = Map::new();
        root.insert("id".into(), Value::from(self.id.as_str()));
        for (k, v) in &self.public {
            root.insert(k.clone(), v.clone());
        }
        let features = self.features_list();
        root.insert("state".into(), Value::from(self.state.as_str()));
        if let Some(u) = &self.used_by {
            root.insert("used_by".into(), Value::from(u.clone()));
        }
        if !features.is_empty() {
            root.insert("features".into(), Value::from(features.clone()));
        }
        let mut ro = Map::new();
        ro.insert("created".into(), Value::from(self.created));
        ro.insert("modified".into(), Value::from(self.modified));
        ro.insert("state".into(), Value::from(self.state.as_str()));
        if let Some(u) = &self.used_by {
            ro.insert("used_by".into(), Value::from(u.clone()));
        }
        if !features.is_empty() {
            ro.insert("features".into(), Value::from(features));
        }
        if let Some(available) = features_available.filter(|a| !a.is_empty()) {
            ro.insert("features_available".into(), Value::from(available.to_vec()));
        }
        if let Some(carrier) = self.module_name.strip_prefix("knm_") {
            ro.insert("carrier_module".into(), Value::from(carrier));
        }
        root.insert("_read_only".into(), Value::Object(ro));
        Value::Object(root)
    }
}

/// Recursive merge: objects merge key by key, `null` deletes, anything else replaces.
fn merge_into(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match (target.get_mut(k), v) {
            (_, Value::Null) => {
                target.remove(k);
            }
            (Some(Value::Object(t)), Value::Object(p)) => merge_into(t, p),
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    const NOW: i64 = 63_700_000_000;

    fn fixture(name: &str) -> Value {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/numbers/priv-fixtures")
            .join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    fn load(name: &str) -> NumberDoc {
        NumberDoc::from_json(&fixture(name), NOW).unwrap()
    }

    fn feature_keys(d: &NumberDoc) -> Vec<&str> {
        d.features.keys().map(String::as_str).collect()
    }

    /// `knm_converters:to_db/1`, vector A4: number database names.
    #[test]
    fn a4_number_db_names() {
        assert_eq!(encoded_number_db("+14158867900").as_deref(), Some("numbers%2F%2B1415"));
        assert_eq!(encoded_number_db("14158867900").as_deref(), Some("numbers%2F14158"));
        assert_eq!(encoded_number_db("1234"), None);
        assert_eq!(number_db("+14158867900").as_deref(), Some("numbers/+1415"));
    }

    /// `knm_phone_number:is_state/1`: the nine states round-trip; anything else is refused.
    #[test]
    fn s2_1_states() {
        for st in NumberState::ALL {
            assert_eq!(st.as_str().parse::<NumberState>().unwrap(), st);
        }
        assert!("bogus".parse::<NumberState>().is_err());
    }

    /// Vector M1: `old_vsn_1_in` → dirty; created/modified `"undefined"` become integers; local feature.
    #[test]
    fn m1_old_vsn_1() {
        let d = load("old_vsn_1_in.json");
        let out = fixture("old_vsn_1_out.json");
        assert!(d.migrated());
        assert_eq!(d.id.as_str(), "+15045551226");
        assert_eq!(d.assigned_to.as_ref().unwrap().as_str(), out["pvt_assigned_to"]);
        assert_eq!(d.module_name, "knm_local");
        assert_eq!(d.state, NumberState::InService);
        assert!(!d.ported_in);
        assert!(d.reserve_history.is_empty());
        assert_eq!((d.created, d.modified), (NOW, NOW));
        assert_eq!(d.to_json()["pvt_features"], json!({"local": {}}));
        assert_eq!(d.to_json()["pvt_db_name"], out["pvt_db_name"]);
        assert!(d.to_json().get("pvt_used_by").is_none());
        assert!(d.to_json().get("pvt_authorizing_account").is_none());
    }

    /// Vector M2: `old_vsn_1.1` is current: not dirty, timestamps kept.
    #[test]
    fn m2_old_vsn_1_1() {
        let d = load("old_vsn_1.1.json");
        assert!(!d.migrated());
        assert_eq!((d.created, d.modified), (63_648_122_255, 63_648_133_355));
        assert_eq!(feature_keys(&d), ["local"]);
    }

    /// Vector M3: `pvt_number_state` → `pvt_state` (dirty); `pvt_features: []` and root `used_by`
    /// vanish; `wnm`-free module kept.
    #[test]
    fn m3_old_vsn_2() {
        let d = load("old_vsn_2_in.json");
        assert!(d.migrated());
        let j = d.to_json();
        assert_eq!(j["pvt_state"], "in_service");
        assert!(j.get("pvt_number_state").is_none());
        assert_eq!(d.module_name, "knm_pacwest");
        assert_eq!(j["pvt_ported_in"], false);
        assert_eq!(d.created, 63_637_990_840);
        assert_eq!(d.modified, NOW);
        assert!(j.get("pvt_features").is_none());
        assert!(j.get("pvt_used_by").is_none());
        assert!(j.get("used_by").is_none());
        let out = fixture("old_vsn_2_out.json");
        assert_eq!(j["ui_metadata"], out["ui_metadata"]);
        assert_eq!(j["pvt_reserve_history"], out["pvt_reserve_history"]);
    }

    /// Vector M4: `old_vsn_2.1` not dirty.
    #[test]
    fn m4_old_vsn_2_1() {
        let d = load("old_vsn_2.1.json");
        assert!(!d.migrated());
        assert_eq!(d.modified, 63_637_990_853);
        assert_eq!(d.state, NumberState::InService);
        assert_eq!(d.module_name, "knm_pacwest");
    }

    /// Vector M5: `wnm_pacwest` → `knm_pacwest`.
    #[test]
    fn m5_old_vsn_2_2() {
        let d = load("old_vsn_2.2_in.json");
        assert!(d.migrated());
        assert_eq!(d.module_name, "knm_pacwest");
        assert_eq!(d.state, NumberState::InService);
        assert!(d.to_json().get("pvt_number_state").is_none());
        let out = fixture("old_vsn_2.2_out.json");
        assert_eq!(d.to_json()["pvt_module_name"], out["pvt_module_name"]);
    }

    /// Vector M6: `wnm_bandwidth` → `knm_bandwidth2`; features and used_by kept.
    #[test]
    fn m6_old_vsn_3() {
        let d = load("old_vsn_3_in.json");
        let out = fixture("old_vsn_3_out.json");
        assert!(d.migrated());
        assert_eq!(d.module_name, "knm_bandwidth2");
        assert!(d.reserve_history.is_empty());
        assert!(!d.ported_in);
        assert_eq!(d.created, 63_646_110_391);
        assert_eq!(d.to_json()["pvt_features"], out["pvt_features"]);
        assert_eq!(d.used_by.as_deref(), Some("callflow"));
        assert_eq!(d.to_json()["pvt_carrier_data"], out["pvt_carrier_data"]);
    }

    /// Vector M7.
    #[test]
    fn m7_old_vsn_3_1() {
        let d = load("old_vsn_3.1.json");
        assert!(!d.migrated());
        assert_eq!(d.module_name, "knm_bandwidth2");
        assert_eq!(d.state, NumberState::InService);
    }

    /// Vector M8: `wnm_local` → `knm_local`, `[]` features → `{local:{}}`, public `dash_e911`
    /// copied to `e911`; public fields equal `_out`'s.
    #[test]
    fn m8_old_vsn_4() {
        let d = load("old_vsn_4_in.json");
        let out = fixture("old_vsn_4_out.json");
        assert!(d.migrated());
        assert_eq!(d.module_name, "knm_local");
        assert_eq!(d.state, NumberState::Reserved);
        assert_eq!(d.to_json()["pvt_features"], json!({"local": {}}));
        assert!(d.used_by.is_none());
        let out_public = sanitize_public_fields(out.as_object().unwrap());
        assert_eq!(d.public, out_public);
    }

    /// Vector M9.
    #[test]
    fn m9_old_vsn_4_1() {
        let d = load("old_vsn_4.1.json");
        assert!(!d.migrated());
        assert_eq!(d.to_json()["pvt_features"], fixture("old_vsn_4.1.json")["pvt_features"]);
    }

    /// Vector M10: private `dash_e911` → `e911`; public `e911` copied from `dash_e911`; timestamps
    /// set; root `used_by` dropped.
    #[test]
    fn m10_old_vsn_5() {
        let d = load("old_vsn_5_in.json");
        let out = fixture("old_vsn_5_out.json");
        assert!(d.migrated());
        let j = d.to_json();
        assert_eq!(j["pvt_features"], out["pvt_features"]);
        assert_eq!(j["e911"], out["e911"]);
        assert_eq!(j["dash_e911"], out["dash_e911"]);
        assert_eq!((d.created, d.modified), (NOW, NOW));
        assert!(j.get("pvt_used_by").is_none());
        assert!(j.get("used_by").is_none());
    }

    /// Vector M11.
    #[test]
    fn m11_old_vsn_5_1() {
        let d = load("old_vsn_5.1.json");
        assert!(!d.migrated());
        assert_eq!(d.module_name, "knm_bandwidth2");
        assert_eq!(d.state, NumberState::InService);
        assert_eq!(d.assigned_to.as_ref().unwrap().as_str(), "account0000000000000000000000002");
        for k in ["cnam", "e911", "dash_e911"] {
            assert!(d.public.contains_key(k), "{k}");
        }
        let keys = feature_keys(&d);
        for k in ["inbound_cnam", "outbound_cnam", "e911"] {
            assert!(keys.contains(&k), "{k}");
        }
        assert!(!keys.contains(&"dash_e911") && !keys.contains(&"local"));
        assert_eq!(d.features["e911"], d.public["e911"]);
        assert_eq!(d.public["e911"], d.public["dash_e911"]);
        assert!(d.used_by.is_none());
    }

    /// Vector M12.
    #[test]
    fn m12_old_vsn_6() {
        let d = load("old_vsn_6_in.json");
        assert!(!d.migrated());
        assert_eq!(d.module_name, "knm_local");
        assert_eq!(d.state, NumberState::InService);
        assert_eq!(d.used_by.as_deref(), Some("trunkstore"));
        assert_eq!(d.to_json()["pvt_used_by"], fixture("old_vsn_6_out.json")["pvt_used_by"]);
    }

    /// Vector M13 (load part; the "fix" needs the feature providers, `knm_providers`).
    #[test]
    fn m13_old_vsn_7() {
        let d = load("old_vsn_7_in.json");
        assert!(!d.migrated());
        assert_eq!(d.assigned_to.as_ref().unwrap().as_str(), "account0000000000000000000000003");
        assert_eq!(d.module_name, "knm_local");
        assert_eq!(d.state, NumberState::InService);
        assert_eq!(feature_keys(&d), ["inbound_cnam", "local", "outbound_cnam"]);
        assert_eq!(d.used_by.as_deref(), Some("callflow"));
    }

    /// `knm_phone_number:save/1`'s account-db copy: the account copy carries its own `_rev`.
    #[test]
    fn s7_3_account_copy() {
        let d = load("old_vsn_7.1.json");
        assert_eq!(d.to_account_copy_json(Some("3-x"))["_rev"], "3-x");
        assert!(d.to_account_copy_json(None).get("_rev").is_none());
        assert_eq!(d.to_account_copy_json(None)["pvt_state"], "in_service");
    }

    /// Vector M14: a current document round-trips equal as JSON.
    #[test]
    fn m14_old_vsn_7_1_round_trips() {
        let raw = fixture("old_vsn_7.1.json");
        let d = NumberDoc::from_json(&raw, NOW).unwrap();
        assert!(!d.migrated());
        assert_eq!(d.to_json(), raw);
    }

    /// `knm_phone_number:to_json/1`: unknown private fields are kept, Kazoo's obsolete ones dropped, `id`/`used_by`
    /// never written as public fields.
    #[test]
    fn s10_1_unknown_fields() {
        let raw = json!({"_id": "+14158867900", "pvt_state": "available", "pvt_module_name": "knm_local",
            "pvt_created": 1, "pvt_modified": 2, "pvt_custom": {"a": 1}, "_attachments": {"x": {}},
            "pvt_is_billable": true, "id": "x", "used_by": "callflow", "mine": 42});
        let d = NumberDoc::from_json(&raw, NOW).unwrap();
        let j = d.to_json();
        assert_eq!(j["pvt_custom"], json!({"a": 1}));
        assert_eq!(j["_attachments"], json!({"x": {}}));
        assert_eq!(j["mine"], 42);
        assert!(j.get("pvt_is_billable").is_none());
        assert!(j.get("id").is_none() && j.get("used_by").is_none());
    }

    /// `knm_phone_number:to_public_json/1`: public JSON shape.
    #[test]
    fn s10_2_public_json() {
        let d = load("old_vsn_6_in.json");
        let p = d.to_public_json();
        assert_eq!(p["id"], "+12156774700");
        assert_eq!(p["state"], "in_service");
        assert_eq!(p["used_by"], "trunkstore");
        assert_eq!(p["features"], json!(["failover", "local", "prepend"]));
        assert_eq!(p["failover"], json!({"sip": "sip:blipblop@158.85.21.24"}));
        assert_eq!(p["_read_only"]["carrier_module"], "local");
        assert_eq!(p["_read_only"]["created"], 63_640_935_218_i64);
        assert!(p.get("pvt_state").is_none());
        assert!(p["_read_only"].get("features_available").is_none());
        let p = d.to_public_json_with_features(&["prepend".to_owned()]);
        assert_eq!(p["_read_only"]["features_available"], json!(["prepend"]));
    }

    /// Bad input gets a clear error naming the document.
    #[test]
    fn decode_errors_name_the_doc() {
        let e =
            NumberDoc::from_json(&json!({"_id": "+1415", "pvt_state": "bogus"}), NOW).unwrap_err();
        assert!(e.to_string().contains("+1415") && e.to_string().contains("bogus"), "{e}");
        let e = NumberDoc::from_json(
            &json!({"_id": "+1415", "pvt_state": "available",
            "pvt_assigned_to": "nope"}),
            NOW,
        )
        .unwrap_err();
        assert!(e.to_string().contains("pvt_assigned_to"), "{e}");
    }
}
