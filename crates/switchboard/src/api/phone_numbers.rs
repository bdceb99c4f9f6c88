//! `/v2/accounts/{A}/phone_numbers[/{N}[/activate|/reserve|/identify]]`: Kazoo's
//! `cb_phone_numbers_v2` single-number routes (`cb_phone_numbers_v2`'s routes) over the `numbers` store
//! layer, with `cb_phone_numbers_v2`'s replies's status codes and bodies. Every write is a `numbers::store`
//! transition (read, decide, CAS write, re-decide on conflict) performed with `auth_by` = the
//! token's account (`cb_phone_numbers_v2:default_knm_options/1`).
//!
//! Not served (yet): locality, prefix and fix; and dry runs with `accept_charges` (no
//! services/billing here: every write is performed, never quoted).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use numbers::inbound::InboundTable;
use numbers::lifecycle::{AccountLookup, Create, Ctx, Move, PublicFields, Update};
use numbers::store::{NumberSearch, NumberStore, RunOptions};
use numbers::{AccountId, AuthBy, NumberDoc, NumberState, Operation};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use super::auth::{Auth, Caller};
use super::body::CrossbarBody;
use super::docs;
use super::envelope::Envelope;
use super::error::{knm_error, ApiError};
use super::AppState;

/// The number store layer, built from the daemon's live `system_config` and `accounts`
/// documents and rebuilt when either moves (a `number_manager` edit, a carrier section, an
/// account disabled): so the numbers API, connectivity and routing normalise and classify with
/// the same configured `e164_converters` and `classifiers`, and decide with the same accounts.
#[derive(Default)]
pub(crate) struct NumbersCache {
    /// The store layer and the generations of `system_config` and `accounts` it was built from.
    cached: Mutex<Option<((u64, u64), NumberStore)>>,
}

impl NumbersCache {
    async fn get(&self, state: &AppState) -> Result<NumberStore, ApiError> {
        let system = state.live.system_config.current();
        let accounts = state.live.accounts.current();
        let built_from = (system.generation(), accounts.generation());
        let mut cached = self.cached.lock().await;
        if let Some((from, store)) = cached.as_ref() {
            if *from == built_from {
                return Ok(store.clone());
            }
        }
        let store = NumberStore::from_live(state.store.clone(), &system, &accounts)
            .await
            .map_err(knm_error)?;
        *cached = Some((built_from, store.clone()));
        Ok(store)
    }
}

/// The token's account as `auth_by` (the router has checked it may act on the path's account).
fn auth_by(caller: &Caller) -> Result<AuthBy, ApiError> {
    AuthBy::parse(&caller.account_id).map_err(knm_error)
}

/// The path's `{account_id}` (the router has checked the caller may act on it), parsed once as
/// the raw id Kazoo's guards take; anything else is a 400 naming the value.
fn path_account(account: &str) -> Result<AccountId, ApiError> {
    Ok(AccountId::parse(account)?)
}

pub(crate) async fn number_store(state: &AppState) -> Result<NumberStore, ApiError> {
    state.numbers.get(state).await
}

/// The live inbound table, once it has read every number database up to its live feed (before
/// that it may miss numbers that exist); `None` before, or without one.
pub(crate) fn caught_up_table(state: &AppState) -> Option<&InboundTable> {
    state.inbound.as_ref().filter(|table| table.is_caught_up())
}

/// `knm_number:lookup_account/1` `lookup_account` of a number document in hand (the inbound table's, or one read from
/// the store; no port request), decided with `store`'s config and accounts, which are the
/// current ones (the cache is rebuilt when the live `system_config` or `accounts` moves).
pub(crate) fn lookup_doc(
    store: &NumberStore,
    number: &e164::E164,
    doc: Option<&NumberDoc>,
) -> Result<AccountLookup, numbers::Error> {
    let cnam = doc.is_none_or(|doc| numbers::carriers::should_lookup_cnam(&doc.module_name));
    let ctx = Ctx::system(store.config(), store.accounts(), numbers::store::now_gregorian());
    numbers::lifecycle::lookup_account(number, doc, None, cnam, &ctx)
}

fn normalize(store: &NumberStore, raw: &str) -> Result<e164::E164, ApiError> {
    store.normalize(raw).map_err(knm_error)
}

async fn run(
    state: &AppState,
    caller: &Caller,
    called: &'static str,
    raw: &str,
    op: Operation,
) -> Result<Envelope, ApiError> {
    run_at(state, caller, called, raw, op, None).await
}

/// [`run`] on the number document's revision `expected_rev` when one is pinned (`If-Match`, the
/// body's `_rev`): a number that is at another revision is a 409, nothing written. `called` is
/// the operation the client called (`activate` performs a `move`), the label it is counted
/// under in `switchboard_number_transitions_total`.
async fn run_at(
    state: &AppState,
    caller: &Caller,
    called: &'static str,
    raw: &str,
    op: Operation,
    expected_rev: Option<String>,
) -> Result<Envelope, ApiError> {
    let by = auth_by(caller)?;
    let store = number_store(state).await?;
    let number = normalize(&store, raw)?;
    let opts = RunOptions { expected_rev, ..RunOptions::by(by.clone()) };
    let decision = apply(store.clone(), number, op, opts).await?;
    metrics::counter!("switchboard_number_transitions_total", "op" => called).increment(1);
    let public = store.public_json(&decision.doc, &by);
    Ok(Envelope::ok(public).with_revision(decision.doc.rev.as_deref()))
}

async fn apply(
    store: NumberStore,
    number: e164::E164,
    op: Operation,
    opts: RunOptions,
) -> Result<numbers::Decision, ApiError> {
    store.apply(&number, &op, &opts).await.map_err(knm_error)
}

/// The public fields of a body: everything but private keys and `id`.
fn public_fields(mut body: Map<String, Value>) -> Map<String, Value> {
    body.retain(|k, _| !k.starts_with('_') && !k.starts_with("pvt_") && k != "id");
    body
}

/// `GET /v2/accounts/{A}/phone_numbers`: with `prefix`, the account's search (Crossbar's
/// `find_numbers` for the account: its own pool numbers, knm_managed, knm_inum, … are found
/// too); else the listing of the numbers whose account-database copy `A` holds, in Kazoo's shape:
/// `{numbers: {number: {state, features: [names], assigned_to, used_by, created, updated,
/// features_available, …}}, cascade_quantity}` (see [`listing_row`], [`cascade_quantity`]).
pub(crate) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    Path(a): Path<String>,
    Query(q): Query<SearchQuery>,
) -> Result<Envelope, ApiError> {
    let account = path_account(&a)?;
    if q.prefix.is_some() {
        let rows = search_and_discover(&s, &q, Some(&account)).await?;
        return Ok(Envelope::ok(Value::Array(rows)));
    }
    let store = number_store(&s).await?;
    let by = AuthBy::parse(&caller.account_id).map_err(knm_error)?;
    let is_admin = numbers::auth::is_admin(store.accounts(), &by);
    let mut listed = Map::new();
    for copy in store.account_numbers(&account).await.map_err(knm_error)? {
        if let Some((id, row)) = listing_row(&store, &copy, is_admin) {
            listed.insert(id, row);
        }
    }
    let cascade = cascade_quantity(&store, &account).await?;
    Ok(Envelope::ok(json!({"numbers": listed, "cascade_quantity": cascade})))
}

/// One row of the account listing, as Kazoo's `phone_numbers/crossbar_listing` view emits it
/// (`features` the names of `pvt_features`, `updated` = `pvt_modified`, absent values left out)
/// plus Crossbar's `features_available` for the caller.
fn listing_row(store: &NumberStore, copy: &Value, is_admin: bool) -> Option<(String, Value)> {
    let id = copy.get("_id").and_then(Value::as_str)?.to_owned();
    let mut row = Map::new();
    let state = copy.get("pvt_state").or_else(|| copy.get("pvt_number_state"));
    let features: Vec<Value> = copy
        .get("pvt_features")
        .and_then(Value::as_object)
        .map(|f| f.keys().map(|k| Value::String(k.clone())).collect())
        .unwrap_or_default();
    row.insert("features".into(), Value::Array(features));
    for (key, field) in [
        ("state", state),
        ("features_allowed", copy.get("pvt_features_allowed")),
        ("features_denied", copy.get("pvt_features_denied")),
        ("assigned_to", copy.get("pvt_assigned_to")),
        ("used_by", copy.get("pvt_used_by")),
        ("created", copy.get("pvt_created")),
        ("updated", copy.get("pvt_modified")),
        ("locality", copy.get("pvt_locality")),
    ] {
        if let Some(value) = field.filter(|v| !v.is_null()) {
            row.insert(key.into(), value.clone());
        }
    }
    if let Ok(doc) = NumberDoc::from_json(copy, numbers::store::now_gregorian()) {
        let available = numbers::features::available_features_for(
            &doc,
            store.config(),
            store.accounts(),
            is_admin,
        );
        row.insert("features_available".into(), json!(available));
    }
    Some((id, Value::Object(row)))
}

/// `cascade_quantity`: how many numbers the account and the accounts below it hold, by
/// classifier (`{"did_us": 2, "tollfree_us": 1}`; a number no classifier matches counts as
/// `unknown`). Kazoo reads the same figure from its service plan quantities
/// (`kz_services_quantities:cascade_category(Services, "phone_numbers")`); here it is counted
/// from the account databases.
async fn cascade_quantity(
    store: &NumberStore,
    account: &numbers::AccountId,
) -> Result<Value, ApiError> {
    let mut accounts = vec![account.clone()];
    accounts.extend(store.descendants(account).await.map_err(knm_error)?);
    let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for holder in &accounts {
        for copy in store.account_numbers(holder).await.map_err(knm_error)? {
            let Some(id) = copy.get("_id").and_then(Value::as_str) else { continue };
            let class = store
                .converters()
                .classifier_for(id)
                .map_or_else(|| "unknown".to_owned(), |c| c.name.clone());
            *counts.entry(class).or_default() += 1;
        }
    }
    Ok(json!(counts))
}

/// `GET /v2/accounts/{A}/phone_numbers/{N}`: `get` (`cb_phone_numbers_v2`'s routes: ownership by A is not checked, the
/// read gate of `knm_phone_number:handle_fetch/2` is).
pub(crate) async fn get_one(
    State(s): State<AppState>,
    caller: Caller,
    Path((_, n)): Path<(String, String)>,
) -> Result<Envelope, ApiError> {
    run(&s, &caller, "get", &n, Operation::Get).await
}

/// `PUT /v2/accounts/{A}/phone_numbers/{N}`: `create` assigned to A, state `create_with_state`
/// (default in_service), public fields = the body minus `create_with_state`.
pub(crate) async fn create(
    State(s): State<AppState>,
    caller: Caller,
    Path((a, n)): Path<(String, String)>,
    CrossbarBody(mut body): CrossbarBody,
) -> Result<Envelope, ApiError> {
    let state = match body.remove("create_with_state") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.parse::<NumberState>().map_err(|_| {
            ApiError::validation(
                "create_with_state",
                "enum",
                format!("{text} is not a number state"),
            )
        })?),
        Some(_) => {
            return Err(ApiError::validation(
                "create_with_state",
                "type",
                "Value is not of type string",
            ))
        }
    };
    let op = Operation::Create(Create {
        assign_to: Some(path_account(&a)?),
        state,
        public_fields: Some(public_fields(body)),
        ..Create::default()
    });
    let reply = run(&s, &caller, "create", &n, op).await?;
    Ok(reply.with_status(StatusCode::CREATED))
}

/// `POST /v2/accounts/{A}/phone_numbers/{N}`: `update`, the body replaces the public fields
/// (on the revision pinned by `If-Match` or the body's `_rev`, if any).
pub(crate) async fn post(
    State(s): State<AppState>,
    caller: Caller,
    Path((_, n)): Path<(String, String)>,
    headers: HeaderMap,
    CrossbarBody(body): CrossbarBody,
) -> Result<Envelope, ApiError> {
    let pinned = docs::pinned_rev(&headers, Some(&body))?;
    let op = Operation::Update(Update {
        public_fields: Some(PublicFields::Replace(public_fields(body))),
        ..Update::default()
    });
    run_at(&s, &caller, "update", &n, op, pinned).await
}

/// `PATCH /v2/accounts/{A}/phone_numbers/{N}`: `update`, the body is merged in (on the
/// revision pinned by `If-Match` or the body's `_rev`, if any).
pub(crate) async fn patch(
    State(s): State<AppState>,
    caller: Caller,
    Path((_, n)): Path<(String, String)>,
    headers: HeaderMap,
    CrossbarBody(body): CrossbarBody,
) -> Result<Envelope, ApiError> {
    let pinned = docs::pinned_rev(&headers, Some(&body))?;
    let op = Operation::Update(Update {
        public_fields: Some(PublicFields::Merge(public_fields(body))),
        ..Update::default()
    });
    run_at(&s, &caller, "update", &n, op, pinned).await
}

/// `?hard=true`.
#[derive(Debug, Deserialize)]
pub(crate) struct DeleteQuery {
    #[serde(default)]
    hard: bool,
}

/// `DELETE /v2/accounts/{A}/phone_numbers/{N}`: `release`; `?hard=true` by a superduper admin
/// deletes. Releasing an `available` number is a 404 (`cb_phone_numbers_v2`'s not-in-service reply).
pub(crate) async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    Path((_, n)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
    headers: HeaderMap,
) -> Result<Envelope, ApiError> {
    let pinned = docs::pinned_rev(&headers, None)?;
    let op = if q.hard {
        Auth::require_superduper(&caller)?;
        Operation::Delete
    } else {
        Operation::Release
    };
    match run_at(&s, &caller, if q.hard { "delete" } else { "release" }, &n, op, pinned).await {
        Err(ApiError::Custom { data, .. })
            if data.get("cause").and_then(Value::as_str) == Some("from available to released") =>
        {
            Err(knm_error(numbers::Error::NotFound { number: n }))
        }
        other => Ok(other?),
    }
}

/// `PUT /v2/accounts/{A}/phone_numbers/{N}/activate`: `move` to A, the body as public fields.
pub(crate) async fn activate(
    State(s): State<AppState>,
    caller: Caller,
    Path((a, n)): Path<(String, String)>,
    headers: HeaderMap,
    CrossbarBody(body): CrossbarBody,
) -> Result<Envelope, ApiError> {
    let pinned = docs::pinned_rev(&headers, Some(&body))?;
    let fields = public_fields(body);
    let op = Operation::Move(Move {
        assign_to: Some(path_account(&a)?),
        public_fields: (!fields.is_empty()).then_some(PublicFields::Merge(fields)),
        ..Move::default()
    });
    run_at(&s, &caller, "activate", &n, op, pinned).await
}

/// `PUT /v2/accounts/{A}/phone_numbers/{N}/reserve`: `reserve` for A.
pub(crate) async fn reserve(
    State(s): State<AppState>,
    caller: Caller,
    Path((a, n)): Path<(String, String)>,
) -> Result<Envelope, ApiError> {
    let op = Operation::Reserve { assign_to: Some(path_account(&a)?) };
    run(&s, &caller, "reserve", &n, op).await
}

/// `GET /v2/accounts/{A}/phone_numbers/{N}/identify`: `{account_id, number}` of the owner, from
/// the live inbound table once it has caught up; a number it does not have is looked up in the
/// store (its document, then the open port requests). A number owned outside the caller's
/// account tree is answered exactly like a number that does not exist (404): unlike Kazoo, the
/// owner of someone else's number is never revealed, not even by a `not_in_service` or
/// `account_disabled` error.
pub(crate) async fn identify(
    State(s): State<AppState>,
    caller: Caller,
    Path((_, n)): Path<(String, String)>,
) -> Result<Envelope, ApiError> {
    let store = number_store(&s).await?;
    let number = normalize(&store, &n)?;
    let from_table = caught_up_table(&s)
        .map(|table| table.with_entry(&number, |e| lookup_doc(&store, &number, e.map(|e| &e.doc))));
    let found = match from_table {
        Some(Err(numbers::Error::NotFound { .. })) | None => {
            // Port requests are not in the table (and a table still catching up may miss a
            // number): the store reads both.
            store.lookup_account(&number).await
        }
        Some(found) => found,
    };
    let may_see = |owner: &str| caller.superduper || s.auth.authorize(&caller, owner).is_ok();
    let hidden = || knm_error(numbers::Error::NotFound { number: number.as_str().to_owned() });
    let found = match found {
        Ok(found) if may_see(found.account_id.as_str()) => found,
        Ok(_) => return Err(hidden()),
        Err(
            numbers::Error::NotInService { account, .. }
            | numbers::Error::AccountDisabled { account, .. },
        ) if !may_see(&account) => return Err(hidden()),
        Err(err) => return Err(knm_error(err)),
    };
    Ok(Envelope::ok(
        json!({"account_id": found.account_id.as_str(), "number": found.number.as_str()}),
    ))
}

/// The query of a number search, as Crossbar's `find_numbers` reads it.
#[derive(Debug, Deserialize)]
pub(crate) struct SearchQuery {
    prefix: Option<String>,
    quantity: Option<String>,
    offset: Option<String>,
    country: Option<String>,
}

/// `GET /v2/phone_numbers?prefix&quantity&offset&country`: search the configured carriers
/// (`knm_search`). Like Kazoo's, this route needs no token. The hits are kept as `discovery` records for
/// buying.
pub(crate) async fn search(
    State(s): State<AppState>,
    Query(q): Query<SearchQuery>,
) -> Result<Envelope, ApiError> {
    let rows = search_and_discover(&s, &q, None).await?;
    Ok(Envelope::ok(Value::Array(rows)))
}

/// The validated options of a search (Kazoo's `find_numbers` schema: `prefix` 3..10
/// characters, required; `quantity` at least 1, default 1; `offset` at least 0, default 0;
/// `country` two letters, default `US`).
struct SearchParams {
    prefix: String,
    quantity: usize,
    offset: usize,
    country: String,
}

fn search_params(q: &SearchQuery) -> Result<SearchParams, ApiError> {
    let prefix = match q.prefix.clone() {
        None => {
            return Err(ApiError::validation("prefix", "required", "Field is required but missing"))
        }
        Some(p) if p.chars().count() < 3 => {
            return Err(ApiError::validation(
                "prefix",
                "minLength",
                "Value must be at least 3 characters",
            ))
        }
        Some(p) if p.chars().count() > 10 => {
            return Err(ApiError::validation(
                "prefix",
                "maxLength",
                "String must not be more than 10 characters",
            ))
        }
        Some(p) => p,
    };
    let quantity = match q.quantity.as_deref().map(str::parse::<usize>) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => {
            return Err(ApiError::validation("quantity", "minimum", "Value must be at least 1"))
        }
    };
    let offset = match q.offset.as_deref().map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return Err(ApiError::validation("offset", "minimum", "Value must be at least 0"))
        }
    };
    let country = match q.country.as_deref() {
        None => "US".to_owned(),
        Some(c) if numbers::country::dial_code(c).is_some() => c.to_ascii_uppercase(),
        Some(c) => {
            return Err(ApiError::validation(
                "country",
                "enum",
                format!("{c} is not a two-letter country code"),
            ))
        }
    };
    Ok(SearchParams { prefix, quantity, offset, country })
}

/// Searches the carriers (for `account` when given; `knm_carriers:get_available_carriers/1`) and keeps the carrier stock found
/// as `discovery` records, so any instance sharing the store can buy it; the rows as Crossbar
/// answers them.
async fn search_and_discover(
    s: &AppState,
    q: &SearchQuery,
    account: Option<&numbers::AccountId>,
) -> Result<Vec<Value>, ApiError> {
    let params = search_params(q)?;
    let store = number_store(s).await?;
    let request = NumberSearch {
        prefix: &params.prefix,
        quantity: params.quantity,
        offset: params.offset,
        country: &params.country,
        account,
    };
    let hits = store.find_for(&request).await.map_err(knm_error)?;
    store.keep_discovery(&hits).await.map_err(knm_error)?;
    Ok(hits.iter().map(numbers::store::search_row).collect())
}

/// `PUT /v2/accounts/{A}/phone_numbers/{N}/port`: `create` in state `port_in`.
pub(crate) async fn port(
    State(s): State<AppState>,
    caller: Caller,
    Path((a, n)): Path<(String, String)>,
    CrossbarBody(body): CrossbarBody,
) -> Result<Envelope, ApiError> {
    let op = Operation::Create(Create {
        assign_to: Some(path_account(&a)?),
        state: Some(NumberState::PortIn),
        public_fields: Some(public_fields(body)),
        ..Create::default()
    });
    let reply = run(&s, &caller, "port", &n, op).await?;
    Ok(reply.with_status(StatusCode::CREATED))
}

/// What a collection request does to each number.
#[derive(Debug, Clone, Copy)]
enum Bulk {
    Create,
    Replace,
    Merge,
    Release,
    Activate,
}

/// `numbers` of a collection body (`cb_phone_numbers_v2:default_knm_options/1`: required, a non-empty list of strings, unique after
/// normalization), the rest of the body being public fields.
fn collection_numbers(
    store: &NumberStore,
    body: &mut Map<String, Value>,
) -> Result<Vec<String>, ApiError> {
    let list = match body.remove("numbers") {
        None => {
            return Err(ApiError::validation(
                "numbers",
                "required",
                "Field is required but missing",
            ))
        }
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(ApiError::validation("numbers", "type", "Value is not of type array"))
        }
    };
    if list.is_empty() {
        return Err(ApiError::validation(
            "numbers",
            "minimum",
            "The list must have at least 1 items",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let Value::String(raw) = item else {
            return Err(ApiError::validation("numbers", "type", "Every item must be a string"));
        };
        let key =
            store.normalize(&raw).map(|n| n.as_str().to_owned()).unwrap_or_else(|_| raw.clone());
        if !seen.insert(key) {
            return Err(ApiError::validation(
                "numbers",
                "uniqueItems",
                "List of items is not unique",
            ));
        }
        out.push(raw);
    }
    Ok(out)
}

async fn collection(
    s: &AppState,
    caller: &Caller,
    a: &str,
    mut body: Map<String, Value>,
    bulk: Bulk,
) -> Result<Envelope, ApiError> {
    let by = auth_by(caller)?;
    let store = number_store(s).await?;
    let inputs = collection_numbers(&store, &mut body)?;
    let fields = public_fields(body);
    let assign_to = Some(path_account(a)?);
    let op = match bulk {
        Bulk::Create => Operation::Create(Create {
            assign_to,
            public_fields: Some(fields),
            ..Create::default()
        }),
        Bulk::Replace => Operation::Update(Update {
            public_fields: Some(PublicFields::Replace(fields)),
            ..Update::default()
        }),
        Bulk::Merge => Operation::Update(Update {
            public_fields: Some(PublicFields::Merge(fields)),
            ..Update::default()
        }),
        Bulk::Release => Operation::Release,
        Bulk::Activate => Operation::Move(Move {
            assign_to,
            public_fields: (!fields.is_empty()).then_some(PublicFields::Merge(fields)),
            ..Move::default()
        }),
    };
    let opts = RunOptions::by(by);
    let outcome = store.apply_many(&inputs, &op, &opts).await;
    metrics::counter!("switchboard_number_transitions_total", "op" => "collection")
        .increment(outcome.ok.len() as u64);
    // `cb_phone_numbers_v2`'s success replies: 200 with the per-number results, even when every number failed.
    Ok(Envelope::ok(outcome.to_json()))
}

/// `PUT /v2/accounts/{A}/phone_numbers/collection`: create each number for A.
pub(crate) async fn collection_create(
    State(s): State<AppState>,
    caller: Caller,
    Path(a): Path<String>,
    CrossbarBody(body): CrossbarBody,
) -> Result<Envelope, ApiError> {
    collection(&s, &caller, &a, body, Bulk::Create).await
}

/// `POST /v2/accounts/{A}/phone_numbers/collection`: replace each number's public fields.
pub(crate) async fn collection_post(
    State(s): State<AppState>,
    caller: Caller,
    Path(a): Path<String>,
    CrossbarBody(body): CrossbarBody,
) -> Result<Envelope, ApiError> {
    collection(&s, &caller, &a, body, Bulk::Replace).await
}

/// `PATCH /v2/accounts/{A}/phone_numbers/collection`: merge into each number's public fields.
pub(crate) async fn collection_patch(
    State(s): State<AppState>,
    caller: Caller,
    Path(a): Path<String>,
    CrossbarBody(body): CrossbarBody,
) -> Result<Envelope, ApiError> {
    collection(&s, &caller, &a, body, Bulk::Merge).await
}

/// `DELETE /v2/accounts/{A}/phone_numbers/collection`: release each number.
pub(crate) async fn collection_delete(
    State(s): State<AppState>,
    caller: Caller,
    Path(a): Path<String>,
    CrossbarBody(body): CrossbarBody,
) -> Result<Envelope, ApiError> {
    collection(&s, &caller, &a, body, Bulk::Release).await
}

/// `PUT /v2/accounts/{A}/phone_numbers/collection/activate`: move each number to A.
pub(crate) async fn collection_activate(
    State(s): State<AppState>,
    caller: Caller,
    Path(a): Path<String>,
    CrossbarBody(body): CrossbarBody,
) -> Result<Envelope, ApiError> {
    collection(&s, &caller, &a, body, Bulk::Activate).await
}

fn classifier_json(c: &e164::Classifier) -> Map<String, Value> {
    let mut out = c.extra.clone();
    out.insert("friendly_name".into(), Value::String(c.friendly_name.clone()));
    out.insert("regex".into(), Value::String(c.pattern.as_str().to_owned()));
    if c.emergency {
        out.insert("emergency".into(), Value::Bool(true));
    }
    if let Some(pp) = &c.pretty_print {
        out.insert("pretty_print".into(), Value::String(pp.clone()));
    }
    out
}

/// `GET /v2/accounts/{A}/phone_numbers/classifiers`: every classifier, by name.
pub(crate) async fn classifiers(State(s): State<AppState>) -> Result<Envelope, ApiError> {
    let store = number_store(&s).await?;
    let all: Map<String, Value> = store
        .converters()
        .classifiers()
        .iter()
        .map(|c| (c.name.clone(), Value::Object(classifier_json(c))))
        .collect();
    Ok(Envelope::ok(Value::Object(all)))
}

/// `GET /v2/accounts/{A}/phone_numbers/classifiers/{N}`: the classifier `N` matches, with
/// `number`, `e164` and `name`; 404 when none does.
pub(crate) async fn classify(
    State(s): State<AppState>,
    Path((_, n)): Path<(String, String)>,
) -> Result<Envelope, ApiError> {
    let store = number_store(&s).await?;
    let converters = store.converters();
    let Some(found) = converters.classifier_for(&n) else {
        return Err(ApiError::BadIdentifier(format!("no classifier matches {n}")));
    };
    let mut data = classifier_json(found);
    data.insert("name".into(), Value::String(found.name.clone()));
    data.insert("number".into(), Value::String(n.clone()));
    data.insert("e164".into(), Value::String(converters.normalize(&n)));
    Ok(Envelope::ok(Value::Object(data)))
}

/// `GET /v2/accounts/{A}/phone_numbers/carriers_info`: `knm_carriers:info/3` `info(auth account, A, A's
/// reseller)`: `{maximal_prefix_length, usable_carriers, usable_creation_states}`.
pub(crate) async fn carriers_info(
    State(s): State<AppState>,
    caller: Caller,
    Path(a): Path<String>,
) -> Result<Envelope, ApiError> {
    let by = auth_by(&caller)?;
    let account = path_account(&a)?;
    let store = number_store(&s).await?;
    let info = store.carriers_info(&account, &by).await.map_err(knm_error)?;
    Ok(Envelope::ok(info))
}

/// `numbers` of a check body: required, a non-empty list of strings (duplicates are allowed,
/// `knm_carriers:check/1` removes them after normalization).
fn check_numbers(body: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let list = match body.get("numbers") {
        None => {
            return Err(ApiError::validation(
                "numbers",
                "required",
                "Field is required but missing",
            ))
        }
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(ApiError::validation("numbers", "type", "Value is not of type array"))
        }
    };
    if list.is_empty() {
        return Err(ApiError::validation(
            "numbers",
            "minimum",
            "The list must have at least 1 items",
        ));
    }
    list.iter()
        .map(|item| match item {
            Value::String(raw) => Ok(raw.clone()),
            _ => Err(ApiError::validation("numbers", "type", "Every item must be a string")),
        })
        .collect()
}

/// `POST /v2/accounts/{A}/phone_numbers/check` with `{"data": {"numbers": [...]}}`: `knm_carriers:check/1`
/// `check(Numbers)` over the system `carrier_modules`: `{number: status}`, the first carrier
/// that can check deciding; with none (the default `knm_local` cannot) every number is
/// `"error"`. An input that cannot be normalized is `"error"` under the input as given.
pub(crate) async fn check(
    State(s): State<AppState>,
    caller: Caller,
    CrossbarBody(body): CrossbarBody,
) -> Result<Envelope, ApiError> {
    let by = auth_by(&caller)?;
    let inputs = check_numbers(&body)?;
    let store = number_store(&s).await?;
    let mut valid = Vec::with_capacity(inputs.len());
    let mut out = Map::new();
    for raw in inputs {
        match store.normalize(&raw) {
            Ok(number) => valid.push(number),
            Err(_) => {
                out.insert(raw, Value::from("error"));
            }
        }
    }
    for (number, status) in store.check(&valid, &by).await {
        out.insert(number, Value::String(status));
    }
    Ok(Envelope::ok(Value::Object(out)))
}

/// The cache, shared through the app state.
pub(crate) fn cache() -> Arc<NumbersCache> {
    Arc::new(NumbersCache::default())
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;
    use docstore::naming::{accounts_db, numbers_db};
    use docstore::DbName;

    use super::*;
    use crate::api::testing::{caught_up, memory_store, state_over};

    const OWNER: &str = "acc00000000000000000000000000a01";
    const DISABLED: &str = "acc00000000000000000000000000d01";
    const FOREIGN: &str = "acc00000000000000000000000000f01";

    fn number_doc(number: &str, owner: &str) -> Value {
        json!({"_id": number, "pvt_type": "number", "pvt_state": "in_service",
               "pvt_assigned_to": owner, "pvt_module_name": "knm_inventory",
               "pvt_created": 63700000000u64, "pvt_modified": 63700000000u64})
    }

    async fn identify_json(state: &AppState, number: &str) -> (StatusCode, Value) {
        let caller = Caller { account_id: OWNER.into(), superduper: false };
        let path = Path((OWNER.to_owned(), number.to_owned()));
        let reply = identify(State(state.clone()), caller, path).await;
        let response = reply.into_response();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// `knm_number:lookup_account/1` through `/identify`: the inbound table answers for the numbers it has (with the
    /// store layer's current accounts); the store for the others, port requests included
    /// (vector L7); the exact 404 and 400 shapes either way. A number owned outside the
    /// caller's tree is the 404 of an unknown number, in service or not.
    #[tokio::test]
    async fn identify_answers_from_the_table_and_falls_back_to_the_store() {
        let (in_table, in_store, in_port, of_disabled, unknown) =
            ("+14155550201", "+14155550202", "+14155550203", "+14155550204", "+14155550299");
        let (of_foreign, of_foreign_released) = ("+14155550205", "+14155550206");
        let store = memory_store();
        store.ensure_db(&accounts_db()).await.unwrap();
        // DISABLED is a sub-account of OWNER (the caller); FOREIGN is another tree.
        let accounts = [
            (OWNER, true, json!([])),
            (DISABLED, false, json!([OWNER])),
            (FOREIGN, true, json!([])),
        ]
        .map(|(id, enabled, tree)| {
            json!({"_id": id, "pvt_type": "account", "name": id, "pvt_tree": tree,
                       "pvt_enabled": enabled})
        });
        for doc in &accounts {
            store.put(&accounts_db(), doc.clone()).await.unwrap();
        }
        // Only the store has `in_store`; only the table has `in_table` (as if its document
        // were written a moment ago and the store read were stale): who answered shows.
        let db = numbers_db(in_store).unwrap();
        store.ensure_db(&db).await.unwrap();
        store.put(&db, number_doc(in_store, OWNER)).await.unwrap();
        let ports = DbName::new("port_requests").unwrap();
        store.ensure_db(&ports).await.unwrap();
        let port = json!({"_id": "port1", "pvt_type": "port_request", "pvt_port_state": "submitted",
                          "pvt_account_id": OWNER, "numbers": {in_port: {}}});
        store.put(&ports, port).await.unwrap();
        // The table keeps numbers only: a disabled owner is known from the live accounts.
        let table = InboundTable::new();
        table.apply_docs(&[
            number_doc(in_table, OWNER),
            number_doc(of_disabled, DISABLED),
            number_doc(of_foreign, FOREIGN),
        ]);
        let db = numbers_db(of_foreign_released).unwrap();
        store.ensure_db(&db).await.unwrap();
        let mut foreign_released = number_doc(of_foreign_released, FOREIGN);
        foreign_released["pvt_state"] = json!("released");
        store.put(&db, foreign_released).await.unwrap();
        let (state, shutdown) = state_over(store, Vec::new(), Some(table));
        caught_up(&state).await;

        for number in [in_table, in_store, in_port] {
            let (status, body) = identify_json(&state, number).await;
            assert_eq!(status, StatusCode::OK, "{number}: {body}");
            assert_eq!(body["data"], json!({"account_id": OWNER, "number": number}), "{body}");
        }
        let (status, body) = identify_json(&state, unknown).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["message"], "bad_identifier", "{body}");
        assert_eq!(
            body["data"],
            json!({"message": "bad identifier", "not_found": "The number could not be found"})
        );
        let (status, body) = identify_json(&state, of_disabled).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            body["data"],
            json!({"cause": "account_disabled", "account_id": DISABLED, "number": of_disabled})
        );
        let (_, not_found) = identify_json(&state, unknown).await;
        for number in [of_foreign, of_foreign_released] {
            let (status, body) = identify_json(&state, number).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{number}: {body}");
            assert_eq!(body["data"], not_found["data"], "{number}: {body}");
            assert!(!body.to_string().contains(FOREIGN), "{body}");
        }
        shutdown.cancel();
    }
}
