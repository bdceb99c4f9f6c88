//! The compiled route table of one scope (global `offnet`, or one account) and its fast lookup.
//!
//! Lookups do not scan every resource: each rule's anchored literal prefixes (from the simple
//! matcher or `regex-syntax`'s prefix extractor) key a hash index of (resource, rule) pairs, so
//! a lookup probes one key per distinct prefix length and evaluates only the rules whose prefix
//! the number starts with. Rules with no usable prefix (unanchored, alternations the extractor
//! cannot bound) sit under the empty key and are always evaluated — a rule left out of the hits
//! cannot match, so the answer is the same as trying every rule of every resource.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use e164::{CaptureList, Pattern};
use serde_json::{Map, Value};

use crate::chunks::Chunks;
use crate::config::Config;
use crate::resource::{GatewayStrategy, ParsedResource};
use crate::simple::SimplePattern;

mod backtrack;
pub(crate) mod delta;
mod index;

use index::Hit;
pub(crate) use index::PrefixTrie;

/// Which database a table was compiled from (Kazoo's resource databases (`offnet`, account dbs), `stepswitch_resources:maybe_get_endpoints/2`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Db `offnet`: global carriers.
    Global,
    /// One account db's local ("BYOC") resources.
    Local {
        /// The raw 32-hex account id.
        account_id: String,
    },
}

impl Scope {
    /// Whether this is the global scope.
    pub fn is_global(&self) -> bool {
        matches!(self, Scope::Global)
    }
}

/// A dedicated-IP proxy of an account (`stepswitch_resources`' local-resource fields, `stepswitch_resources`' dedicated-IP proxies).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proxy {
    /// The IP's `zone`.
    pub zone: String,
    /// The IP's `ip`.
    pub ip: String,
}

/// Index of a rule regex inside its table (rules with the same text share one).
pub(crate) type PatternId = u32;

/// One rule regex: matched by the simple matcher when it is in its subset, otherwise by a
/// regex engine compiled on first use (validity is checked at table compile time).
#[derive(Debug)]
pub(crate) struct RulePattern {
    pub(crate) source: std::sync::Arc<str>,
    pub(crate) simple: Option<SimplePattern>,
    /// Boxed: most rules never need an engine, and a table holds tens of thousands of them.
    pub(crate) compiled: OnceLock<Option<Box<Pattern>>>,
    /// The literal prefixes every match starts with (the same set the index is keyed by);
    /// empty when the rule has no usable prefix. Checked before any matcher runs, so a
    /// candidate resource's other rules (and always-evaluated unindexed resources) cost a
    /// byte comparison instead of a backtracking match.
    pub(crate) prefixes: crate::simple::PrefixSet,
    /// The simple matcher ran out of steps on a lookup: the rule is matched by the regex
    /// engine (linear time for every rule in the simple subset) from then on.
    pub(crate) demoted: AtomicBool,
    /// The backtracking engine ran out of its budget on a lookup: the rule is not evaluated
    /// any more (it matches nothing) for the life of this table. A change to any document of
    /// the table's scope rebuilds the table, which gives the rule a fresh try.
    pub(crate) quarantined: AtomicBool,
}

impl RulePattern {
    /// A rule regex with nothing learnt at lookup time yet.
    pub(crate) fn new(
        source: std::sync::Arc<str>,
        simple: Option<SimplePattern>,
        compiled: OnceLock<Option<Box<Pattern>>>,
    ) -> RulePattern {
        RulePattern {
            source,
            simple,
            compiled,
            prefixes: crate::simple::PrefixSet::default(),
            demoted: AtomicBool::new(false),
            quarantined: AtomicBool::new(false),
        }
    }

    pub(crate) fn get(&self) -> Option<&Pattern> {
        self.compiled.get_or_init(|| Pattern::new(&self.source).ok().map(Box::new)).as_deref()
    }

    /// Whether matching this rule can run the backtracking engine: it is outside the simple
    /// matcher's subset and only `fancy-regex` reads it (compiles it now if it was not yet).
    pub(crate) fn needs_backtracking(&self) -> bool {
        self.simple.is_none() && self.get().is_some_and(|it| it.engine() == e164::Engine::Fancy)
    }

    /// Whether a lookup quarantined this rule.
    pub(crate) fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Relaxed)
    }

    pub(crate) fn captures(&self, text: &str, seen: &AtomicBool) -> Option<CaptureList> {
        if !self.prefixes.is_empty()
            && !self.prefixes.iter().any(|prefix| text.as_bytes().starts_with(prefix))
        {
            return None;
        }
        self.captures_unfiltered(text, seen)
    }

    /// [`RulePattern::captures`] without the prefix check (the index already did it).
    ///
    /// Every evaluation is bounded: the simple matcher by its step budget (past it the rule is
    /// demoted to the linear-time engine for good), the backtracking engine by its own (past
    /// it the rule is quarantined: it matches nothing from then on, the table reports it, and
    /// `seen`, its table's [`Patterns::any_quarantined`], is set).
    pub(crate) fn captures_unfiltered(&self, text: &str, seen: &AtomicBool) -> Option<CaptureList> {
        if let Some(simple) = &self.simple {
            if text.is_ascii()
                && text.len() <= crate::simple::MAX_TEXT
                && !self.demoted.load(Ordering::Relaxed)
            {
                match simple.try_captures(text) {
                    Ok(found) => return found,
                    Err(_) => self.demoted.store(true, Ordering::Relaxed),
                }
            }
        }
        if self.is_quarantined() {
            return None;
        }
        // Most tries fail: `is_match` answers those without allocating capture slots.
        let pattern = self.get()?;
        let found = match pattern.try_is_match(text) {
            Ok(false) => Ok(None),
            Ok(true) => pattern.try_captures(text),
            Err(exceeded) => Err(exceeded),
        };
        found.unwrap_or_else(|_| {
            self.quarantined.store(true, Ordering::Relaxed);
            seen.store(true, Ordering::Relaxed);
            None
        })
    }
}

/// One compiled rule: where it came from and its regex.
#[derive(Clone, PartialEq, Eq)]
pub struct Rule {
    /// The regex as written.
    pub source: RuleText,
    /// Its index in the document's list (`stepswitch_resources`' rule compilation evaluates highest index first).
    pub doc_index: usize,
    pub(crate) pattern: PatternId,
}

impl std::fmt::Debug for Rule {
    /// The rule as written; not its pattern id, which depends on how the table was built (a
    /// full compile numbers patterns by first use, an incremental rebuild appends).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("source", &self.source)
            .field("doc_index", &self.doc_index)
            .finish_non_exhaustive()
    }
}

/// The text of a rule regex as written, shared by every rule with that text and by the
/// table's compiled pattern (a clone is a reference-count increment). Reads as a `str`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleText(std::sync::Arc<str>);

impl RuleText {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared text itself.
    pub(crate) fn shared(&self) -> std::sync::Arc<str> {
        std::sync::Arc::clone(&self.0)
    }
}

impl From<std::sync::Arc<str>> for RuleText {
    fn from(text: std::sync::Arc<str>) -> RuleText {
        RuleText(text)
    }
}

impl From<&str> for RuleText {
    fn from(text: &str) -> RuleText {
        RuleText(text.into())
    }
}

impl std::ops::Deref for RuleText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RuleText {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for RuleText {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RuleText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for RuleText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for RuleText {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for RuleText {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for RuleText {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<RuleText> for str {
    fn eq(&self, other: &RuleText) -> bool {
        self == &*other.0
    }
}

impl PartialEq<RuleText> for &str {
    fn eq(&self, other: &RuleText) -> bool {
        *self == &*other.0
    }
}

/// A gateway after compilation: document values with resource and config defaults applied
/// (`gateway_from_jobj/2`, Kazoo's resource document fields).
#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    /// Position in the document's `gateways` list.
    pub doc_index: usize,
    /// `endpoint_type`, default `sip`.
    pub endpoint_type: std::borrow::Cow<'static, str>,
    /// `server`.
    pub server: Option<String>,
    /// `port`.
    pub port: Option<i64>,
    /// `realm`.
    pub realm: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `password`.
    pub password: Option<String>,
    /// Outbound custom channel vars (`custom_channel_vars`, `out` merged over legacy keys).
    pub ccvs: Arc<Map<String, Value>>,
    /// Outbound custom SIP headers (`custom_sip_headers`, `out` merged over legacy keys).
    pub sip_headers: Arc<Map<String, Value>>,
    /// `custom_sip_interface`.
    pub sip_interface: Option<String>,
    /// `invite_format`, default `route`.
    pub invite_format: std::borrow::Cow<'static, str>,
    /// `format_from_uri`, default the resource's.
    pub format_from_uri: bool,
    /// `from_uri_realm`, default the resource's.
    pub from_uri_realm: Option<String>,
    /// `from_account_realm`, default the resource's.
    pub from_account_realm: bool,
    /// Emergency: the resource's flag, or the gateway's own `emergency`.
    pub emergency: bool,
    /// `media.fax_option`, default the resource's.
    pub fax_option: bool,
    /// `codecs`, default the resource's.
    pub codecs: Vec<String>,
    /// `bypass_media`, default the resource's.
    pub bypass_media: bool,
    /// `force_port` (`stepswitch_resources:reverse_lookup/1`).
    pub force_port: bool,
    /// `route` or `ss.default_route`: verbatim dial string (`stepswitch_resources:gateway_dialstring/2`).
    pub route: Option<String>,
    /// `prefix` (classifier copies may override it, `stepswitch_resources:create_classifier_resource/4`).
    pub prefix: String,
    /// `suffix` (classifier copies may override it, `stepswitch_resources:create_classifier_resource/4`).
    pub suffix: String,
    /// `media.rtcp_mux` or `ss.default_rtcp_mux`.
    pub rtcp_mux: Option<String>,
    /// `caller_id_type`, default `ss.default_caller_id_type`.
    pub caller_id_type: std::borrow::Cow<'static, str>,
    /// `progress_timeout`, default `ss.default_progress_timeout`.
    pub progress_timeout: i64,
    /// `Endpoint-Options` by endpoint type.
    pub endpoint_options: Arc<Map<String, Value>>,
    /// Privacy method (`sip` or `kazoo`).
    pub privacy_method: std::borrow::Cow<'static, str>,
    /// Hide the caller's name.
    pub privacy_hide_name: bool,
    /// Hide the caller's number (from the number keys: the Kazoo bug in `stepswitch_resources`' `privacy_hide_number` fixed).
    pub privacy_hide_number: bool,
    /// `invite_parameters`.
    pub invite_parameters: Option<Box<crate::resource::InviteParameters>>,
    /// What every endpoint through this gateway shares, rendered when the table is compiled.
    pub(crate) rendered: Option<Arc<crate::endpoint::Rendered>>,
}

/// A resource after compilation (Kazoo's `#resrc{}`): one per enabled document, or one per
/// classifier copy (`stepswitch_resources:create_classifier_resource/4`).
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// `_id`, or `<_id>-<classifier>` for a classifier copy.
    pub id: String,
    /// The document's `_id`.
    pub doc_id: String,
    /// `name` (classifier copies: `<name> - <classifier>`).
    pub name: Option<String>,
    /// Weight after default and clamp to 1..=100 (`stepswitch_resources`' weight).
    pub weight: i64,
    /// Grace period after default and clamp to 0..=100 (unused by routing, the Kazoo bug in the resource's `grace_period`).
    pub grace_period: i64,
    /// `flags`.
    pub flags: Vec<String>,
    /// `require_flags`.
    pub require_flags: bool,
    /// `ignore_flags`.
    pub ignore_flags: bool,
    /// Number rules in evaluation order (reverse document order, `stepswitch_resources`' rule compilation).
    pub rules: Vec<Rule>,
    /// Caller-id rules in evaluation order (`stepswitch_resources`' rule compilation, `stepswitch_resources:evaluate_cid_rules/2`).
    pub cid_rules: Vec<Rule>,
    /// Emergency test rules in evaluation order (`stepswitch_resources:is_test_number/2`).
    pub rules_test: Vec<Rule>,
    /// Emergency resource.
    pub emergency: bool,
    /// Classifier of a classifier copy.
    pub classifier: Option<String>,
    /// `classifiers.<K>.enabled` of a classifier copy (default true).
    pub classifier_enable: bool,
    /// Enabled gateways in document order (`stepswitch_resources`' gateway compilation).
    pub gateways: Vec<Gateway>,
    /// `gateway_strategy`.
    pub gateway_strategy: GatewayStrategy,
    /// Global (db `offnet`) or local.
    pub global: bool,
    /// The account's dedicated proxies (local resources only, `stepswitch_resources`' dedicated-IP proxies).
    pub proxies: Vec<Proxy>,
    /// `formatters` or `ss.default_formatters` (`kz_formatters`).
    pub formatters: Option<Map<String, Value>>,
}

/// The compiled resources of one scope, ready for lookups.
///
/// Immutable; the reactor builds a new one and swaps it in. Its parts are reference-counted
/// so that a table updated for one changed document ([`crate::rebuild`]) shares everything
/// else with the table it was derived from.
#[derive(Debug, Clone)]
pub struct RouteTable {
    pub(crate) scope: Scope,
    /// In view order: ascending `_id`, classifier copies in the doc's key order.
    pub(crate) resources: Resources,
    pub(crate) patterns: Arc<Patterns>,
    pub(crate) index: Arc<PrefixTrie>,
    pub(crate) by_classifier: Arc<HashMap<String, Vec<u32>>>,
    /// Per resource (same order), what select checks before it needs the resource itself:
    /// kept dense so a lookup does not pull each candidate's large `Resource` into cache.
    pub(crate) hot: Chunks<Hot, 8>,
    /// Some rule runs on the backtracking engine (lookaround, backreferences): a lookup may
    /// spend up to that engine's step budget per such rule, so callers on an async runtime run
    /// lookups of this table on a blocking thread ([`RouteTable::may_backtrack`]).
    pub(crate) backtracking: bool,
    /// What the table was compiled from, when it was compiled by [`crate::rebuild`]: the next
    /// rebuild compares its documents with these and updates only the changed ones.
    pub(crate) lineage: Option<Arc<Lineage>>,
    /// The resources appended and the slots removed since the last full compile (`None`: none).
    pub(crate) delta: Option<Arc<delta::Delta>>,
}

/// The distinct rule regexes of a table, by [`PatternId`].
#[derive(Debug, Default)]
pub(crate) struct Patterns {
    pub(crate) list: Vec<RulePattern>,
    /// Some lookup quarantined one of them: the next rebuild is a full compile, which gives
    /// every rule a fresh try (shared by the tables updated from this one).
    pub(crate) any_quarantined: AtomicBool,
}

impl Patterns {
    pub(crate) fn new(list: Vec<RulePattern>) -> Patterns {
        Patterns { list, any_quarantined: AtomicBool::new(false) }
    }
}

impl std::ops::Deref for Patterns {
    type Target = [RulePattern];

    fn deref(&self) -> &[RulePattern] {
        &self.list
    }
}

/// The inputs a table was compiled from ([`crate::rebuild`]), and where each input document's
/// resources and diagnostics are, so that a change to one document is applied to its part.
#[derive(Debug)]
pub(crate) struct Lineage {
    /// The documents, ascending `_id`, no two with the same `_id`.
    pub(crate) docs: Arc<Vec<Arc<ParsedResource>>>,
    pub(crate) config: Arc<Config>,
    pub(crate) proxies: Vec<Proxy>,
    /// Per document, the position of its first resource in view order; one more entry at the
    /// end. A document's resources are in consecutive slots.
    pub(crate) starts: Arc<Vec<u32>>,
    /// The documents whose compilation raised diagnostics: `_id` → them, in order.
    pub(crate) compiled: Arc<BTreeMap<String, Vec<crate::Diagnostic>>>,
    /// The `_id`s of the documents whose parsing raised diagnostics.
    pub(crate) parsed: Arc<BTreeSet<String>>,
}

impl Lineage {
    /// Every diagnostic of the table, as [`crate::compile_parsed`] lists them: what parsing
    /// raised, in document order, then what compiling raised, in view order.
    pub(crate) fn diagnostics(&self) -> Vec<crate::Diagnostic> {
        let doc = |id: &String| {
            let pos = self.docs.binary_search_by(|it| it.id.cmp(id));
            pos.map_or(&[][..], |pos| &self.docs[pos].diagnostics[..])
        };
        let parsed = self.parsed.iter().flat_map(doc);
        parsed.chain(self.compiled.values().flatten()).cloned().collect()
    }
}

/// The compiled resources of a table in view order ([`RouteTable::resources`]).
///
/// They sit in slots that never move (what lookups and [`Selected::index`] name); after a full
/// compile the slots are in view order, after an incremental rebuild `view` lists the live
/// slots in view order.
pub struct Resources {
    pub(crate) slots: Chunks<Resource, 5>,
    pub(crate) view: Option<Arc<[u32]>>,
}

impl Resources {
    pub(crate) fn new(slots: Chunks<Resource, 5>) -> Resources {
        Resources { slots, view: None }
    }

    /// The resources in view order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Resource> + Clone + '_ {
        let all = self.view.is_none().then(|| self.slots.iter());
        let viewed = self.view.as_deref().map(|view| view.iter().map(|it| self.slot(*it as usize)));
        all.into_iter().flatten().chain(viewed.into_iter().flatten())
    }

    /// Number of resources.
    pub fn len(&self) -> usize {
        self.view.as_ref().map_or(self.slots.len(), |it| it.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The resource at `idx` in view order.
    pub fn get(&self, idx: usize) -> Option<&Resource> {
        match &self.view {
            None => self.slots.get(idx),
            Some(view) => view.get(idx).map(|it| self.slot(*it as usize)),
        }
    }

    /// The first resource in view order.
    pub fn first(&self) -> Option<&Resource> {
        self.get(0)
    }

    /// The resource in slot `slot`.
    #[inline]
    pub(crate) fn slot(&self, slot: usize) -> &Resource {
        &self.slots[slot]
    }

    /// Replaces the resource in slot `slot` (copy on write).
    pub(crate) fn set(&mut self, slot: usize, res: Resource) {
        self.slots.set(slot, res);
    }
}

impl Clone for Resources {
    /// Shares every chunk.
    fn clone(&self) -> Resources {
        Resources { slots: self.slots.clone(), view: self.view.clone() }
    }
}

impl std::ops::Index<usize> for Resources {
    type Output = Resource;

    /// The resource at `idx` in view order.
    #[inline]
    fn index(&self, idx: usize) -> &Resource {
        self.get(idx).expect("a resource at this position")
    }
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The fields of a [`Resource`] that every candidate is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hot {
    pub(crate) weight: i64,
    /// What `route()` needs to lay out a selected resource's endpoints, so that a lookup
    /// never loads the resource or its gateways (the endpoints read them when rendered).
    pub(crate) gateways: u32,
    pub(crate) proxies: u32,
    pub(crate) require_flags: bool,
    pub(crate) unclassified: bool,
    pub(crate) has_cid_rules: bool,
    pub(crate) random_gateways: bool,
    /// Some gateway has `invite_parameters` (`stepswitch_resources:sip_invite_parameters/2`).
    pub(crate) invite_parameters: bool,
    /// A tombstone: the slot's document was removed or recompiled into other slots.
    pub(crate) dead: bool,
}

impl Hot {
    pub(crate) fn of(res: &Resource) -> Hot {
        Hot {
            weight: res.weight,
            gateways: res.gateways.len() as u32,
            proxies: res.proxies.len() as u32,
            require_flags: res.require_flags,
            unclassified: res.classifier.is_none(),
            has_cid_rules: !res.cid_rules.is_empty(),
            random_gateways: res.gateway_strategy == GatewayStrategy::Random,
            invite_parameters: res.gateways.iter().any(|gw| gw.invite_parameters.is_some()),
            dead: false,
        }
    }

    /// This slot as a tombstone: lookups skip it (the unflagged, unclassified case without a
    /// check of its own: a tombstone reads as requiring flags).
    pub(crate) fn tombstone(self) -> Hot {
        Hot { dead: true, require_flags: true, unclassified: false, ..self }
    }
}

/// A resource chosen for a number: the resource and the part of the number its rule matched
/// (`stepswitch_resources:filter_resource_by_rules/5`). `'t` is the table's lifetime, `'n` the number's.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected<'t, 'n> {
    /// The resource.
    pub resource: &'t Resource,
    /// Its slot in the table (its position in [`RouteTable::resources`] after a full compile).
    pub index: usize,
    /// "NumberMatch": the selected capture (`stepswitch_resources:filter_resource_by_rules/5`), a slice of the number looked up.
    pub matched: &'n str,
    /// Where `matched` is in the number looked up.
    pub span: std::ops::Range<usize>,
}

impl RouteTable {
    /// The scope this table was compiled for.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The compiled resources in view order (ascending `_id`, the `resources/listing_by_id` view).
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// The resource with this id (classifier copies by `<_id>-<classifier>`).
    pub fn resource(&self, id: &str) -> Option<&Resource> {
        self.resources.iter().find(|it| it.id == id)
    }

    /// Number of compiled resources.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// Whether the table has no resources.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Number of rule regexes (distinct after a full compile; an incremental rebuild gives the
    /// documents it compiles their own).
    pub fn n_patterns(&self) -> usize {
        self.patterns.len() + self.delta.as_ref().map_or(0, |it| it.patterns.len())
    }

    /// The rule pattern with id `id`.
    #[inline]
    pub(crate) fn pattern(&self, id: PatternId) -> &RulePattern {
        match self.patterns.get(id as usize) {
            Some(pattern) => pattern,
            None => self.appended_pattern(id),
        }
    }

    #[cold]
    fn appended_pattern(&self, id: PatternId) -> &RulePattern {
        let delta = self.delta.as_ref().expect("a pattern id past the shared ones is appended");
        delta.pattern(self.patterns.len(), id)
    }

    /// Every rule pattern.
    fn all_patterns(&self) -> impl Iterator<Item = &RulePattern> + '_ {
        let appended = self.delta.iter().flat_map(|it| it.patterns.iter().map(|it| &it.pattern));
        self.patterns.iter().chain(appended)
    }

    /// Compiles every rule regex now rather than on first use, so that the first lookups after
    /// a swap do not pay for it.
    pub fn warm(&self) {
        for pattern in self.all_patterns().filter(|it| it.simple.is_none()) {
            pattern.get();
        }
    }

    /// The rules that lookups quarantined (their backtracking engine ran out of its budget):
    /// one diagnostic per resource, field and rule index, in view order. Rules refused at
    /// compile time are in the compile diagnostics instead.
    pub fn quarantined(&self) -> Vec<crate::Diagnostic> {
        let mut out: Vec<crate::Diagnostic> = Vec::new();
        if !self.all_patterns().any(RulePattern::is_quarantined) {
            return out;
        }
        for res in self.resources.iter() {
            let lists = [("rules", &res.rules), ("cid_rules", &res.cid_rules)];
            for (field, rules) in lists.into_iter().chain([("rules_test", &res.rules_test)]) {
                for rule in rules {
                    if !self.pattern(rule.pattern).is_quarantined() {
                        continue;
                    }
                    let found = crate::resource::diag(
                        &res.doc_id,
                        field,
                        Some(rule.doc_index),
                        &format!(
                            "quarantined: {} on a lookup; not evaluated until a document of \
                             this table changes",
                            e164::BudgetExceeded
                        ),
                    );
                    // Classifier copies of one document share their rules.
                    if !out.contains(&found) {
                        out.push(found);
                    }
                }
            }
        }
        out
    }

    /// `stepswitch_resources:filter_resources/2` to `stepswitch_resources:filter_resource_by_rules/5`: the resources that route `number` (already normalized) for these request
    /// flags and caller id, in final order (stable by weight, ties per `stepswitch_resources`' order before sorting).
    ///
    /// `classification` is `classify(number)`; `caller_id` is what `cid_rules` are matched
    /// against (a resource with `cid_rules` never matches an absent caller id: the Kazoo bug in `stepswitch_bridge:check_diversion_fields/1` fixed).
    pub fn select<'t, 'n>(
        &'t self,
        number: &'n str,
        classification: Option<&str>,
        flags: &[String],
        caller_id: Option<&str>,
    ) -> Vec<Selected<'t, 'n>> {
        // Index hits are (resource, rule position) pairs: only rules whose literal prefix the
        // number starts with (or that have none) can match, so the others are never touched.
        // The hit buffer is reused across lookups on this thread (no allocation per lookup).
        HITS.with(|cell| {
            let mut hits = cell.take();
            hits.clear();
            let selected = self.select_with(&mut hits, number, classification, flags, caller_id);
            cell.set(hits);
            selected
        })
    }

    fn select_with<'t, 'n>(
        &'t self,
        hits: &mut Vec<Hit>,
        number: &'n str,
        classification: Option<&str>,
        flags: &[String],
        caller_id: Option<&str>,
    ) -> Vec<Selected<'t, 'n>> {
        self.index.collect(number.as_bytes(), hits);
        if let Some(delta) = &self.delta {
            delta.index.collect(number.as_bytes(), hits);
        }
        if hits.is_empty() {
            return Vec::new();
        }
        // Sorted: by resource (view order), then by rule position (evaluation order).
        hits.sort_unstable();
        hits.dedup();
        let bucket = self.bucket(classification, flags);
        // The common case (no request flags, unclassified bucket) is decided from `hot`.
        let quick = flags.is_empty() && matches!(bucket, Bucket::Unclassified);
        let mut chosen: Vec<Selected<'t, 'n>> = Vec::new();
        let mut memo = Memo::default();
        let mut rest = hits.as_slice();
        while let Some(&first) = rest.first() {
            let idx = (first.0 >> 32) as u32;
            let n = rest.iter().take_while(|hit| (hit.0 >> 32) as u32 == idx).count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let hot = &self.hot[idx as usize];
            if quick {
                if hot.require_flags || !hot.unclassified {
                    continue;
                }
            } else {
                let res = self.resources.slot(idx as usize);
                if hot.dead || !passes_flags(res, flags) || !bucket.admits(res) {
                    continue;
                }
            }
            // `stepswitch_resources:filter_resource_by_rules/5`: the first rule in evaluation order that matches; the rules not hit
            // cannot match (their prefixes are not in the number). A rule shared by several
            // resources is run once per lookup.
            let found = group.iter().find_map(|&(_, pattern)| {
                memo.get(pattern, || {
                    let list = self
                        .pattern(pattern)
                        .captures_unfiltered(number, &self.patterns.any_quarantined)?;
                    Some(select_capture(&list))
                })
            });
            let Some(span) = found else { continue };
            let resource = self.resources.slot(idx as usize);
            if hot.has_cid_rules {
                match caller_id {
                    Some(cid) if self.first_match(&resource.cid_rules, cid).is_some() => {}
                    _ => continue,
                }
            }
            if chosen.capacity() == 0 {
                chosen.reserve(8);
            }
            chosen.push(Selected {
                resource,
                index: idx as usize,
                matched: &number[span.clone()],
                span,
            });
        }
        // `stepswitch_resources`' order before sorting + `stepswitch_resources:sort_endpoints/1`: stable weight sort of the candidates in view order (no flags) or
        // in reverse view order (with flags). Candidates are in slot order: view order, unless
        // resources were appended since the full compile.
        if let Some(delta) = &self.delta {
            chosen.sort_by_key(|sel| delta.order_key(sel.index));
        }
        if !flags.is_empty() {
            chosen.reverse();
        }
        chosen.sort_by_key(|sel| self.hot[sel.index].weight);
        chosen
    }

    /// `stepswitch_resources:is_test_number/2`: whether any of `rules_test` of resource `id` matches `to_did`.
    pub fn is_test_number(&self, id: &str, to_did: &str) -> bool {
        self.resource(id).is_some_and(|res| self.first_match(&res.rules_test, to_did).is_some())
    }

    /// `stepswitch_resources:filter_resource_by_rules/5`: the first rule (evaluation order) that matches, and its selected capture.
    pub(crate) fn first_match(&self, rules: &[Rule], text: &str) -> Option<String> {
        rules.iter().find_map(|rule| {
            let list = self.pattern(rule.pattern).captures(text, &self.patterns.any_quarantined)?;
            Some(text[select_capture(&list)].to_owned())
        })
    }

    /// `stepswitch_resources:resources_to_endpoints/3`'s bucket for a lookup: the classifier whose copies it uses, `None` for the
    /// unclassified resources.
    pub(crate) fn bucket_class<'c>(
        &self,
        classification: Option<&'c str>,
        flags: &[String],
    ) -> Option<&'c str> {
        match self.bucket(classification, flags) {
            Bucket::Classified(class) => Some(class),
            Bucket::Unclassified => None,
        }
    }

    fn bucket<'c>(&self, classification: Option<&'c str>, flags: &[String]) -> Bucket<'c> {
        if let Some(class) = classification {
            if let Some(members) = self.by_classifier.get(class) {
                let exists = members.iter().any(|idx| {
                    let idx = *idx as usize;
                    !self.hot[idx].dead && passes_flags(self.resources.slot(idx), flags)
                });
                if exists {
                    return Bucket::Classified(class);
                }
            }
        }
        Bucket::Unclassified
    }
}

/// `stepswitch_resources:resources_to_endpoints/3`: which classification bucket a lookup uses.
enum Bucket<'c> {
    /// Only copies with this classifier and `classifier_enable`.
    Classified(&'c str),
    /// Only resources without a classifier.
    Unclassified,
}

impl Bucket<'_> {
    fn admits(&self, res: &Resource) -> bool {
        match self {
            Bucket::Classified(class) => {
                res.classifier.as_deref() == Some(*class) && res.classifier_enable
            }
            Bucket::Unclassified => res.classifier.is_none(),
        }
    }
}

/// `stepswitch_resources:filter_resources/2`: the flag filter.
pub(crate) fn passes_flags(res: &Resource, flags: &[String]) -> bool {
    if flags.is_empty() {
        return !res.require_flags;
    }
    res.ignore_flags
        || flags.iter().all(|flag| is_empty_flag(flag) || res.flags.iter().any(|it| it == flag))
}

/// `kz_term:is_empty/1` for a flag: `""`, `"0"`, `"NULL"`, `"undefined"` (`stepswitch_resources:filter_resources/2`, quirk 68).
fn is_empty_flag(flag: &str) -> bool {
    matches!(flag, "" | "0" | "NULL" | "undefined")
}

/// `stepswitch_resources:filter_resource_by_rules/5`: which part of a match becomes the number.
///
/// Only the whole match (or trailing-unset groups only) → the whole match; otherwise the
/// longest group, ties going to the highest-numbered. Unset groups are never chosen (the Kazoo bug in `stepswitch_resources:evaluate_rules/2` (unset groups)
/// fixed: Kazoo could pick an unset group and crash).
pub fn select_capture(list: &[Option<std::ops::Range<usize>>]) -> std::ops::Range<usize> {
    let whole = list.first().cloned().flatten().unwrap_or(0..0);
    if list.len() <= 1 {
        return whole;
    }
    let mut best: Option<std::ops::Range<usize>> = None;
    for range in list[1..].iter().flatten() {
        match &best {
            Some(current) if range.len() < current.len() => {}
            _ => best = Some(range.clone()),
        }
    }
    best.unwrap_or(whole)
}

/// The outcome of the patterns one lookup has run (a rule shared by a group of resources is
/// one pattern): the first [`Memo::SLOTS`] patterns are remembered, later ones just run.
#[derive(Default)]
struct Memo {
    len: usize,
    slots: [(PatternId, Option<std::ops::Range<usize>>); Memo::SLOTS],
}

impl Memo {
    const SLOTS: usize = 16;

    fn get(
        &mut self,
        pattern: PatternId,
        run: impl FnOnce() -> Option<std::ops::Range<usize>>,
    ) -> Option<std::ops::Range<usize>> {
        if let Some((_, found)) = self.slots[..self.len].iter().find(|it| it.0 == pattern) {
            return found.clone();
        }
        let found = run();
        if self.len < Memo::SLOTS {
            self.slots[self.len] = (pattern, found.clone());
            self.len += 1;
        }
        found
    }
}

thread_local! {
    /// [`RouteTable::select`]'s reusable hit buffer.
    static HITS: std::cell::Cell<Vec<Hit>> = const { std::cell::Cell::new(Vec::new()) };
}

impl RouteTable {
    /// A table with no resources (startup is a reload from an empty table).
    pub fn empty(scope: Scope) -> RouteTable {
        RouteTable {
            scope,
            resources: Resources::new(Chunks::new()),
            patterns: Arc::default(),
            index: Arc::default(),
            by_classifier: Arc::default(),
            hot: Chunks::new(),
            backtracking: false,
            lineage: None,
            delta: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_capture(pattern: &str, number: &str, expected: &str) {
        let pat = Pattern::new(pattern).unwrap();
        let list = pat.captures(number).unwrap();
        assert_eq!(&number[select_capture(&list)], expected, "{pattern} on {number}");
    }

    #[test]
    fn rule_20_capture_selection() {
        // No group: whole match, possibly a substring (quirk 56).
        check_capture(r"^\+1", "+14158867900", "+1");
        check_capture(r"^\+1\d{10}$", "+14158867900", "+14158867900");
        // Longest group wins, not the first (`stepswitch_resources:filter_resource_by_rules/5` / quirk 56).
        check_capture(r"^(\+1)(\d{10})$", "+14158867900", "4158867900");
        // Ties go to the highest-numbered group.
        check_capture(r"^\+(\d{3})(\d{3})", "+141588", "588");
        // Trailing unset groups are dropped → whole match.
        check_capture(r"^\+1\d{10}(x)?$", "+14158867900", "+14158867900");
        // Unset non-trailing group next to an empty set group: Kazoo crashes (the Kazoo bug in `stepswitch_resources:evaluate_rules/2` (unset groups)), we
        // take the set (empty) group.
        check_capture(r"^(a)?()b", "b", "");
    }

    #[test]
    fn rule_17_empty_flags() {
        for flag in ["", "0", "NULL", "undefined"] {
            assert!(is_empty_flag(flag));
        }
        assert!(!is_empty_flag("null"));
    }
}
