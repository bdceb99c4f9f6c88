//! "Why this carrier": for one route request, every resource of the table the request routes
//! with and why it was taken or skipped, each rule's outcome with the matched capture, and the
//! final endpoint order.
//!
//! Off the hot path on purpose: [`explain`] tries every rule of every resource in the table
//! (no prefix index, no shortcuts) and then asks [`route`] itself for the final order, so the
//! order it reports is the order a switch gets. [`route`] is not touched by any of this.
//!
//! Verdicts are enums ([`SkipReason`], [`RuleOutcome`]) serialised with a `reason` / `outcome`
//! tag, so a new reason is one more variant.

use serde::Serialize;
use serde_json::Value;

use crate::route::{caller_id_for_rules, route, table_for, NoTable, RouteRequest, Tables};
use crate::table::{passes_flags, select_capture, Resource, RouteTable};
use crate::ResourceDoc;

/// The explanation of one route request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The number routed (`stepswitch_util:get_outbound_destination/1`).
    pub number: String,
    /// Its classification.
    pub classification: Option<String>,
    /// The table the request routed with: `"global"` or the hunt account's id.
    pub table: String,
    /// Why the table routes nothing at all, when it does not even get looked at.
    pub table_skipped: Option<TableSkip>,
    /// The classifier bucket the lookup used (`stepswitch_resources:resources_to_endpoints/3`): `None` is the unclassified bucket.
    pub bucket: Option<String>,
    /// Every resource of the table in view order, then the documents of that scope that
    /// compiled to no resource.
    pub resources: Vec<ResourceExplanation>,
    /// The final order: what a switch tries, first to last.
    pub order: Vec<OrderEntry>,
}

/// Why no resource of any table was looked at (`stepswitch_resources:maybe_get_endpoints/2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum TableSkip {
    /// `Hunt-Account-ID` is neither the account nor one of its ancestors.
    Hierarchy {
        /// The hunt account.
        hunt_account_id: String,
        /// The calling account, if any.
        account_id: Option<String>,
    },
    /// The hunt account has no loaded table.
    NoLocalTable {
        /// The hunt account.
        hunt_account_id: String,
    },
}

/// One resource (or one classifier copy, or one document that compiled to nothing).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceExplanation {
    /// The resource id (`<_id>-<classifier>` for a classifier copy).
    pub id: String,
    /// The document's `_id`.
    pub doc_id: String,
    /// The classifier of a classifier copy.
    pub classifier: Option<String>,
    /// The weight (`stepswitch_resources`' weight); absent for a document that compiled to nothing.
    pub weight: Option<i64>,
    /// Taken or skipped, and why.
    pub verdict: Verdict,
    /// Every rule in evaluation order (`stepswitch_resources`' rule compilation) with its outcome.
    pub rules: Vec<RuleExplanation>,
}

/// Whether a resource routes the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Selected: its gateways are endpoints of the answer.
    Taken {
        /// The matching rule as written.
        rule: String,
        /// Its index in the document's list.
        rule_index: usize,
        /// The part of the number it captured (`stepswitch_resources:filter_resource_by_rules/5`): what the gateways dial.
        capture: String,
        /// How many endpoints it contributes (gateways × proxies).
        endpoints: usize,
    },
    /// Not selected.
    Skipped(SkipReason),
}

/// Why a resource was not selected, in the order [`crate::RouteTable::select`] checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// The document has `enabled: false` (`stepswitch_resources`' disabled documents).
    Disabled,
    /// The document could not be read as a resource.
    Invalid {
        /// What is wrong with it.
        message: String,
    },
    /// Its `classifiers` yield no copy (empty, or no key is a system classifier; `stepswitch_resources:create_classifier_resource/4`).
    NoClassifierCopies,
    /// `require_flags` and the request has no flags (`stepswitch_resources:filter_resources/2`).
    FlagsRequired,
    /// Request flags the resource does not offer (`stepswitch_resources:filter_resources/2`).
    FlagsMissing {
        /// The request's flags it lacks.
        missing: Vec<String>,
    },
    /// Not in the classification bucket the lookup used (`stepswitch_resources:resources_to_endpoints/3`).
    ClassifierBucket {
        /// The resource's classifier (`None`: an unclassified resource).
        classifier: Option<String>,
    },
    /// A classifier copy in the right bucket, disabled by `classifiers.<K>.enabled`.
    ClassifierDisabled,
    /// The resource has no usable rule (`stepswitch_resources:filter_resource_by_rules/5`).
    NoRules,
    /// No rule matched the number.
    NoRuleMatched,
    /// A rule matched, but its `cid_rules` did not match the caller id (`stepswitch_resources:evaluate_cid_rules/2`).
    CallerId {
        /// The caller id the `cid_rules` saw.
        caller_id: Option<String>,
    },
}

/// One rule of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleExplanation {
    /// Its index in the document's list.
    pub index: usize,
    /// The rule as written.
    pub rule: String,
    /// What it did.
    #[serde(flatten)]
    pub outcome: RuleOutcome,
}

/// What one rule did for the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RuleOutcome {
    /// The first rule (evaluation order) that matched: it decides the capture.
    Matched {
        /// The selected capture (`stepswitch_resources:filter_resource_by_rules/5`).
        capture: String,
    },
    /// Matched too, but an earlier rule in evaluation order already decided.
    AlsoMatched,
    /// Did not match.
    NoMatch,
    /// Not compiled: the regex is invalid, out of bounds or catastrophic (reported in the
    /// table's diagnostics).
    Invalid,
    /// Quarantined: its backtracking engine ran out of its step budget on a lookup, so it is not
    /// evaluated (it matches nothing) until a document of the table's scope changes.
    Quarantined,
}

/// One endpoint of the final order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderEntry {
    /// The resource it comes from.
    pub resource_id: String,
    /// Its weight (the sort key, `stepswitch_resources:sort_endpoints/1`).
    pub weight: i64,
    /// Its `Route`.
    pub route: String,
}

/// Explains `request` against `tables`. `docs` are the raw documents of the scope the request
/// routes with (`offnet`, or the hunt account's database), as stored; they let the answer
/// name documents that compiled to no resource (disabled, unreadable) and rules that did not
/// compile. Pass an empty slice to explain the compiled table alone.
pub fn explain(tables: &Tables, request: &RouteRequest, docs: &[Value]) -> Explanation {
    let number = request.destination(&tables.config);
    let classification = tables.config.converters.classifier_for(&number).map(|it| it.name.clone());
    let hunt = request.hunt_account_id.as_deref().filter(|it| !it.is_empty());
    let name = hunt.unwrap_or("global").to_owned();
    let table = match table_for(tables, request) {
        Ok(table) => table,
        Err(why) => {
            let hunt_account_id = hunt.unwrap_or_default().to_owned();
            let skip = match why {
                NoTable::Hierarchy => {
                    TableSkip::Hierarchy { hunt_account_id, account_id: request.account_id.clone() }
                }
                NoTable::NotLoaded => TableSkip::NoLocalTable { hunt_account_id },
            };
            return Explanation {
                number,
                classification,
                table: name,
                table_skipped: Some(skip),
                bucket: None,
                resources: Vec::new(),
                order: Vec::new(),
            };
        }
    };
    let bucket = table.bucket_class(classification.as_deref(), &request.flags).map(str::to_owned);
    let caller_id = caller_id_for_rules(&tables.config, request);
    let parsed: Vec<ResourceDoc> = docs
        .iter()
        .filter(|doc| ResourceDoc::is_resource(doc))
        .filter_map(|doc| ResourceDoc::from_json(doc).ok().map(|(doc, _)| doc))
        .collect();
    let mut resources: Vec<ResourceExplanation> = table
        .resources()
        .iter()
        .map(|res| {
            let doc = parsed.iter().find(|doc| doc.id == res.doc_id);
            resource(table, res, doc, &number, bucket.as_deref(), request, caller_id.as_deref())
        })
        .collect();
    resources.extend(uncompiled(table, docs));
    let answer = route(tables, request);
    let order = answer
        .endpoints
        .iter()
        .map(|ep| OrderEntry {
            resource_id: ep.resource_id().to_owned(),
            weight: ep.weight(),
            route: ep.dial_string(),
        })
        .collect();
    Explanation {
        number,
        classification,
        table: name,
        table_skipped: None,
        bucket,
        resources,
        order,
    }
}

/// One compiled resource: every rule tried, then the checks in `select`'s order.
fn resource(
    table: &RouteTable,
    res: &Resource,
    doc: Option<&ResourceDoc>,
    number: &str,
    bucket: Option<&str>,
    request: &RouteRequest,
    caller_id: Option<&str>,
) -> ResourceExplanation {
    let mut rules = Vec::with_capacity(res.rules.len());
    let mut first: Option<(usize, String, String)> = None;
    for rule in &res.rules {
        let pattern = table.pattern(rule.pattern);
        let found = (!pattern.is_quarantined())
            .then(|| pattern.captures(number, &table.patterns.any_quarantined))
            .flatten()
            .map(|list| number[select_capture(&list)].to_owned());
        let outcome = match (found, &first) {
            // Quarantined before this lookup, or by it (its budget ran out just now).
            (None, _) if pattern.is_quarantined() => RuleOutcome::Quarantined,
            (None, _) => RuleOutcome::NoMatch,
            (Some(_), Some(_)) => RuleOutcome::AlsoMatched,
            (Some(capture), None) => {
                first = Some((rule.doc_index, rule.source.to_string(), capture.clone()));
                RuleOutcome::Matched { capture }
            }
        };
        rules.push(RuleExplanation {
            index: rule.doc_index,
            rule: rule.source.to_string(),
            outcome,
        });
    }
    // Rules of the document that did not compile (a classifier copy's only rule is its
    // classifier's regex, so only a plain resource's list is compared).
    if let Some(doc) = doc.filter(|_| res.classifier.is_none()) {
        for (index, text) in doc.rules.iter().enumerate().rev() {
            if !res.rules.iter().any(|rule| rule.doc_index == index) {
                rules.push(RuleExplanation {
                    index,
                    rule: text.clone(),
                    outcome: RuleOutcome::Invalid,
                });
            }
        }
    }
    let skip = skip_reason(table, res, &first, bucket, request, caller_id);
    let verdict = match (skip, first) {
        (Some(reason), _) => Verdict::Skipped(reason),
        (None, Some((rule_index, rule, capture))) => Verdict::Taken {
            rule,
            rule_index,
            capture,
            endpoints: res.gateways.len() * res.proxies.len().max(1),
        },
        (None, None) => Verdict::Skipped(SkipReason::NoRuleMatched),
    };
    ResourceExplanation {
        id: res.id.clone(),
        doc_id: res.doc_id.clone(),
        classifier: res.classifier.clone(),
        weight: Some(res.weight),
        verdict,
        rules,
    }
}

/// The first check `select` fails, in its order (flags, bucket, rules, caller id).
fn skip_reason(
    table: &RouteTable,
    res: &Resource,
    first: &Option<(usize, String, String)>,
    bucket: Option<&str>,
    request: &RouteRequest,
    caller_id: Option<&str>,
) -> Option<SkipReason> {
    if !passes_flags(res, &request.flags) {
        if request.flags.is_empty() {
            return Some(SkipReason::FlagsRequired);
        }
        let missing = request
            .flags
            .iter()
            .filter(|flag| !passes_flags(res, std::slice::from_ref(*flag)))
            .cloned()
            .collect();
        return Some(SkipReason::FlagsMissing { missing });
    }
    if res.classifier.as_deref() != bucket {
        return Some(SkipReason::ClassifierBucket { classifier: res.classifier.clone() });
    }
    if res.classifier.is_some() && !res.classifier_enable {
        return Some(SkipReason::ClassifierDisabled);
    }
    if res.rules.is_empty() {
        return Some(SkipReason::NoRules);
    }
    first.as_ref()?;
    if !res.cid_rules.is_empty() {
        let passes = caller_id.is_some_and(|cid| table.first_match(&res.cid_rules, cid).is_some());
        if !passes {
            return Some(SkipReason::CallerId { caller_id: caller_id.map(str::to_owned) });
        }
    }
    None
}

/// The resource documents of the scope that compiled to no resource, with why.
fn uncompiled(table: &RouteTable, docs: &[Value]) -> Vec<ResourceExplanation> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for raw in docs.iter().filter(|doc| ResourceDoc::is_resource(doc)) {
        let id = raw.get("_id").and_then(Value::as_str).unwrap_or_default().to_owned();
        if table.resources().iter().any(|res| res.doc_id == id) || !seen.insert(id.clone()) {
            continue;
        }
        let reason = match ResourceDoc::from_json(raw) {
            Err(err) => SkipReason::Invalid { message: err.to_string() },
            Ok((doc, _)) if !doc.enabled => SkipReason::Disabled,
            Ok((doc, _)) if doc.classifiers.is_some() => SkipReason::NoClassifierCopies,
            Ok(_) => SkipReason::Invalid { message: "not compiled".into() },
        };
        out.push(ResourceExplanation {
            id: id.clone(),
            doc_id: id,
            classifier: None,
            weight: None,
            verdict: Verdict::Skipped(reason),
            rules: Vec::new(),
        });
    }
    out
}

impl Explanation {
    /// The explanation as text for a person: one block per resource, then the final order.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "number: {}\nclassification: {}\ntable: {}\nbucket: {}",
            self.number,
            self.classification.as_deref().unwrap_or("-"),
            self.table,
            self.bucket.as_deref().unwrap_or("unclassified"),
        );
        if let Some(skip) = &self.table_skipped {
            let _ = writeln!(out, "no resource looked at: {}", reason_text(&json(skip)));
        }
        for res in &self.resources {
            let weight = res.weight.map_or_else(|| "-".to_owned(), |w| w.to_string());
            match &res.verdict {
                Verdict::Taken { rule, capture, endpoints, .. } => {
                    let _ = writeln!(
                        out,
                        "TAKEN   {} (weight {weight}): rule {rule} captured {capture} → {endpoints} endpoint(s)",
                        res.id
                    );
                }
                Verdict::Skipped(reason) => {
                    let _ = writeln!(
                        out,
                        "skipped {} (weight {weight}): {}",
                        res.id,
                        reason_text(&json(reason))
                    );
                }
            }
            for rule in &res.rules {
                let outcome = match &rule.outcome {
                    RuleOutcome::Matched { capture } => format!("matched, capture {capture}"),
                    other => reason_text(&json(other)),
                };
                let _ = writeln!(out, "        rule {} {}: {outcome}", rule.index, rule.rule);
            }
        }
        if self.order.is_empty() {
            out.push_str("final order: none (no carrier takes this number)\n");
        } else {
            out.push_str("final order:\n");
            for (i, entry) in self.order.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  {}. {} (weight {}) {}",
                    i + 1,
                    entry.resource_id,
                    entry.weight,
                    entry.route
                );
            }
        }
        out
    }
}

fn json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A tagged reason as one line: its tag, then its other fields as `key=value`.
fn reason_text(value: &Value) -> String {
    let Some(object) = value.as_object() else { return value.to_string() };
    let mut parts: Vec<String> = Vec::new();
    for (key, value) in object {
        match (key.as_str(), value) {
            ("reason" | "outcome", Value::String(tag)) => parts.insert(0, tag.replace('_', " ")),
            (_, Value::Null) => {}
            (_, Value::String(text)) => parts.push(format!("{key}={text}")),
            (_, other) => parts.push(format!("{key}={other}")),
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests;
