//! The number lifecycle as a pure decision: given the stored document (if any), an operation and
//! its context, [`transition`] returns the resulting document and the side effects it implies
//! (carrier call, feature-provider calls, writes), or the `knm_errors` error.
//!
//! Where Kazoo's `save_numbers` runs `knm_providers:save` — create, move, reserve, update — the
//! feature providers run on the would-be document before the dirty test ([`crate::providers`],
//! `knm_providers:exec/2`), so an unchanged replace stays a no-op; release and hard delete run the providers'
//! delete; `assign_to_app`, reconcile and raw state changes are plain saves, as in Kazoo.
//!
//! This is `knm_number_states.erl` (the `knm_number_states`' transition table table), `knm_numbers.erl` / `knm_number.erl` (the `knm_numbers`
//! operations, `knm_numbers:release/2` release) and the save decisions of `knm_phone_number.erl` (`knm_numbers:save_numbers/1` dirty tracking,
//! `knm_number_options:mdn_run` MDN guard, `knm_number_options:dry_run` dry run). No I/O: the store layer performs the effects, compare-and-swaps
//! on `_rev` and, on a conflict, re-reads and calls [`transition`] again with the new document.
//!
//! # For the store layer
//! One attempt, repeated at most [`MAX_ATTEMPTS`] times while the number-database write conflicts:
//! 1. read the number document (`NumberDoc::from_json`; a missing document is `None`; for a move
//!    of an unknown number, the search cache's discovery record, `knm_search:discovery/1`);
//! 2. `transition(number, current, op, ctx)`; an `Err` is the `knm_errors` answer, nothing was done;
//! 3. [`Decision::carrier_call`]: resolve the module with `CarrierKind::from_module`; an unknown
//!    module is skipped (acquire) or ignored (disconnect), as Kazoo does; otherwise call the
//!    carrier and replace [`Decision::doc`] with what it returns (a refusal fails the number). If
//!    a later attempt asks to acquire the same number from the same module again, reuse the first
//!    acquisition rather than buying twice;
//! 3. then each of [`Decision::provider_calls`] (Kazoo's feature providers (`knm_prepend`, `knm_failover`, …)) with [`ProviderCall::perform`], replacing
//!    [`Decision::doc`] with what it returns (a refusal fails the number, nothing is written);
//!    on a later attempt, a call identical to one already made is not made again
//!    ([`ProviderCall::reapply`]);
//! 4. perform [`Decision::writes`] in order: [`Write::SaveNumber`] writes `doc.to_json()` with
//!    `doc.rev` (a 409 goes back to step 1; a missing database is created, then the write
//!    retried); the account copy is `doc.to_account_copy_json(rev in that database)`; deletions
//!    use the revs found in each database.
//!
//! After the number-database write succeeded, the account-database steps are retried on their own
//! conflicts (they are copies, `knm_phone_number:save/1`'s account-db copy) and never re-decide.

use e164::E164;
use serde_json::{Map, Value};

use crate::account::AccountId;
use crate::auth::{self, Accounts, AuthBy};
use crate::config::Config;
use crate::doc::{number_db, NumberDoc, NumberState, KNM_LOCAL, KNM_MDN};
use crate::error::Error;
use crate::providers::{self, FeatureCtx, ProviderCall};

mod bulk;
mod lookup;
mod table;

pub use bulk::{split_reconcilable, transition_many, BulkOutcome, Reconciled};
pub use lookup::{lookup_account, AccountLookup};
pub use table::apply_transition;
use table::{authorize, gate};

/// How many times the store layer decides and writes before giving up on a contended number
/// (each conflict on the number-database write re-reads and re-decides, after the jittered
/// pause of [`docstore::cas_pause`]); the store's compare-and-swap budget.
pub const MAX_ATTEMPTS: u32 = docstore::CAS_ATTEMPTS;

/// Public fields given with an operation: replace them all (crossbar POST/PUT) or merge (PATCH).
#[derive(Debug, Clone, PartialEq)]
pub enum PublicFields {
    /// `set_doc/2`: the given object becomes the public fields.
    Replace(Map<String, Value>),
    /// `update_doc/2`: merged into the current public fields.
    Merge(Map<String, Value>),
}

/// Options of `create` (`knm_numbers:create/2`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Create {
    /// `assign_to`: the account to give the number to (required; an account id).
    pub assign_to: Option<AccountId>,
    /// `state`: requested state (default `in_service`).
    pub state: Option<NumberState>,
    /// `module_name`: carrier module of a new number.
    pub module_name: Option<String>,
    /// `ported_in`.
    pub ported_in: bool,
    /// Public fields of the number.
    pub public_fields: Option<Map<String, Value>>,
    /// Whether the number is in an open port request (the caller looks it up; `knm_numbers:create/2` d).
    pub number_is_porting: bool,
}

/// Options of `move` / activate / buy (`knm_numbers:move/3`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Move {
    /// The account to move the number to (required; an account id).
    pub assign_to: Option<AccountId>,
    /// Public fields to apply.
    pub public_fields: Option<PublicFields>,
    /// `module_name` to set.
    pub module_name: Option<String>,
    /// `ported_in` to set.
    pub ported_in: Option<bool>,
}

/// Options of `update` (`knm_numbers:update/3`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    /// Public fields to replace or merge.
    pub public_fields: Option<PublicFields>,
    /// `ported_in` to set.
    pub ported_in: Option<bool>,
    /// `used_by` to set (`set_used_by/2`), if any: the maintenance "fix" of `kazoo_number_manager_maintenance` sets the app
    /// found in the account's callflow / trunkstore views.
    pub used_by: Option<String>,
    /// `remove_denied_features/1` before saving (`kazoo_number_manager_maintenance` fix, vectors M13, M15): features the
    /// number may no longer have are dropped instead of failing the save with 403.
    pub remove_denied_features: bool,
}

/// One operation of `knm_numbers` on one number.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// `knm_numbers:get/2` `get`: the read gate only; never writes.
    Get,
    /// `knm_numbers:create/2` `create`.
    Create(Create),
    /// `knm_numbers:move/3` `move` (activate, buy): target `in_service`. For a number not in the database the
    /// caller passes the discovery record it found in the search cache (`knm_search:discovery/1`) as `current`.
    Move(Move),
    /// `knm_numbers:reserve/2` `reserve`: target `reserved`.
    Reserve {
        /// The account to reserve the number for (required; an account id).
        assign_to: Option<AccountId>,
    },
    /// `knm_numbers:update/3` `update`: setters only, no state change.
    Update(Update),
    /// `knm_numbers:assign_to_app/3` `assign_to_app`: `used_by := app` (`None` clears it).
    AssignToApp {
        /// The app (`callflow`, `trunkstore`, …).
        used_by: Option<String>,
    },
    /// `knm_numbers:release/2` / `knm_numbers:release/2` `release`.
    Release,
    /// `knm_numbers:delete/2` hard delete (superduper admins only).
    Delete,
    /// `knm_numbers:reconcile/2` `reconcile` (Kazoo 4.3 only): forces the number into `in_service` for `assign_to`,
    /// as the system, without the transition table; public fields are merged. Quirk kept: a
    /// number not in the database is returned as a new `in_service` record and **not saved**.
    Reconcile {
        /// The owner (required; an account id).
        assign_to: Option<AccountId>,
        /// `module_name` to set, if any.
        module_name: Option<String>,
        /// Public fields to merge.
        public_fields: Option<Map<String, Value>>,
    },
    /// A raw `knm_number_states`' transition table transition to `target` (the crawler's aging → available, port completion, …).
    ChangeState {
        /// The target state.
        target: NumberState,
        /// `assign_to`, if any.
        assign_to: Option<AccountId>,
    },
}

impl Operation {
    /// The operation's name, as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::Create(_) => "create",
            Operation::Move(_) => "move",
            Operation::Reserve { .. } => "reserve",
            Operation::Update(_) => "update",
            Operation::AssignToApp { .. } => "assign_to_app",
            Operation::Release => "release",
            Operation::Delete => "delete",
            Operation::Reconcile { .. } => "reconcile",
            Operation::ChangeState { .. } => "change_state",
        }
    }
}

/// The operation of a CLI command (`switchboard numbers get|create|reserve|activate|release|delete
/// NUMBER [--account-id A] [--state S]`): `get` → [`Operation::Get`], `create` →
/// [`Operation::Create`] (assign_to A, state S), `reserve` → [`Operation::Reserve`], `activate` →
/// [`Operation::Move`] (to A), `release` → [`Operation::Release`], `delete` →
/// [`Operation::Delete`]. `identify` is not a transition: it is [`lookup_account`].
///
/// # Errors
/// [`Error::Invalid`] for any other command, or `--state` given to a command other than `create`;
/// [`Error::InvalidAccountId`] for an `--account-id` that is not one.
pub fn operation_for_command(
    command: &str,
    account_id: Option<&str>,
    state: Option<NumberState>,
) -> Result<Operation, Error> {
    if state.is_some() && command != "create" {
        return Err(Error::Invalid {
            reason: format!("--state is only for create, not {command}"),
        });
    }
    let assign_to = account_id.map(AccountId::parse).transpose()?;
    Ok(match command {
        "get" => Operation::Get,
        "create" => Operation::Create(Create { assign_to, state, ..Create::default() }),
        "reserve" => Operation::Reserve { assign_to },
        "activate" => Operation::Move(Move { assign_to, ..Move::default() }),
        "release" => Operation::Release,
        "delete" => Operation::Delete,
        other => return Err(Error::Invalid { reason: format!("unknown numbers command {other}") }),
    })
}

/// What every decision needs besides the document: who asks, the config, the accounts, the time.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// `number_manager` config.
    pub config: &'a Config,
    /// The account documents the predicates of `knm_phone_number`'s authorization read.
    pub accounts: &'a dyn Accounts,
    /// `auth_by` (`None` = undefined, which fails every check; Kazoo's default is `System`).
    pub auth_by: Option<&'a AuthBy>,
    /// `knm_number_options:dry_run` `dry_run`: decide everything, write nothing, call no carrier.
    pub dry_run: bool,
    /// `knm_number_options:mdn_run` `mdn_run`.
    pub mdn_run: bool,
    /// Now, in Gregorian seconds (`pvt_modified` of a dirty document).
    pub now: i64,
}

impl<'a> Ctx<'a> {
    /// The context of an internal read on Kazoo's behalf (`auth_by` system, no dry or mdn run),
    /// as `lookup_account` runs.
    pub fn system(config: &'a Config, accounts: &'a dyn Accounts, now: i64) -> Ctx<'a> {
        Ctx {
            config,
            accounts,
            auth_by: Some(&AuthBy::System),
            dry_run: false,
            mdn_run: false,
            now,
        }
    }
}

impl<'a> Ctx<'a> {
    /// The feature providers' view of this context.
    pub fn feature_ctx(&self) -> FeatureCtx<'a> {
        FeatureCtx {
            config: self.config,
            accounts: self.accounts,
            is_admin: self.auth_by.is_some_and(|a| auth::is_admin(self.accounts, a)),
            dry_run: self.dry_run,
        }
    }
}

/// A call the store must make to the number's carrier module (`knm_carriers:acquire/1`, `knm_numbers:release/2` step 7) before writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarrierCall {
    /// `Module:acquire_number/1`; the carrier may update `pvt_carrier_data`. A module this build
    /// cannot load is skipped (Kazoo logs and skips it).
    Acquire {
        /// The module name (`pvt_module_name`).
        module: String,
    },
    /// `Module:disconnect_number/1`; a module that cannot be loaded is ignored, a carrier
    /// refusal fails the number.
    Disconnect {
        /// The module name.
        module: String,
    },
}

/// One database write a decision implies (`knm_numbers:save_numbers/1`, `knm_numbers:delete/2`). Databases are unencoded names
/// (`numbers/+1415`), the form the store's database names take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Write [`Decision::doc`] to its number database, compare-and-swap on `doc.rev` (no rev =
    /// create). A missing number database is created, then the save retried (`knm_phone_number:save/1` (doc id = the E.164 number)).
    SaveNumber {
        /// `numbers/+1415`.
        db: String,
    },
    /// Write the same JSON into the owner's account database, with that database's own `_rev`.
    /// Skipped if that database does not exist; a failure is `assign_failure`.
    SaveAccountCopy {
        /// The owner.
        account: AccountId,
        /// Its database (`account/ac/co/unt…`).
        db: String,
    },
    /// Delete the number document from its number database (hard delete), on `doc.rev`.
    DeleteNumber {
        /// `numbers/+1415`.
        db: String,
    },
    /// Delete the number's copy from an account database (previous owner after a re-assignment,
    /// or the owner on a hard delete).
    DeleteAccountCopy {
        /// The account.
        account: AccountId,
        /// Its database.
        db: String,
        /// Whether a missing database is fine (previous owner: yes; hard delete of the owner's
        /// copy: no, Kazoo reports `database_error`).
        ignore_missing_db: bool,
    },
}

/// The outcome of [`transition`]: the would-be document and what to do to make it so.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The resulting document (state `deleted` after a hard delete; then it is not saved).
    pub doc: NumberDoc,
    /// Whether the document differs from the stored one (or was migrated on load, or is new).
    pub dirty: bool,
    /// The carrier call to make first, if any (never under dry run).
    pub carrier_call: Option<CarrierCall>,
    /// The feature providers' external calls (Kazoo's feature providers (`knm_prepend`, `knm_failover`, …): Telnyx / Dash e911, Telnyx CNAM), made in
    /// order after the carrier call and before the writes; each may change [`Decision::doc`]
    /// (see [`ProviderCall::perform`]). Never under dry run.
    pub provider_calls: Vec<ProviderCall>,
    /// The writes, in order (empty under dry run, and when nothing changed).
    pub writes: Vec<Write>,
    /// Whether this was a dry run (`knm_number_options:dry_run`).
    pub dry_run: bool,
}

impl Decision {
    /// Whether the decision changes nothing in storage.
    pub fn is_noop(&self) -> bool {
        self.carrier_call.is_none() && self.provider_calls.is_empty() && self.writes.is_empty()
    }

    /// Attaches the providers' calls (dropped under dry run, `knm_number_options:dry_run`).
    fn with_provider_calls(mut self, calls: Vec<ProviderCall>) -> Self {
        if !self.dry_run {
            self.provider_calls = calls;
        }
        self
    }

    /// The public JSON of the resulting document (`knm_phone_number:to_public_json/1`).
    pub fn to_public_json(&self) -> Value {
        self.doc.to_public_json()
    }
}

/// The `assign_to` an operation requires: its absence is `assign_failure` (`field_undefined`).
fn require_assign_to(assign_to: Option<&AccountId>) -> Result<AccountId, Error> {
    assign_to.cloned().ok_or_else(|| Error::AssignFailure { cause: "field_undefined".into() })
}

fn not_found(number: &E164) -> Error {
    Error::NotFound { number: number.to_string() }
}

fn loaded<'d>(number: &E164, current: Option<&'d NumberDoc>) -> Result<&'d NumberDoc, Error> {
    current.ok_or_else(|| not_found(number))
}

/// The writes of a save (`knm_numbers:save_numbers/1`): number db, owner's copy, removal from the previous owner's db.
fn save_writes(doc: &NumberDoc) -> Vec<Write> {
    let mut writes = Vec::with_capacity(3);
    if let Some(db) = number_db(doc.id.as_str()) {
        writes.push(Write::SaveNumber { db });
    }
    if let Some(owner) = &doc.assigned_to {
        writes.push(Write::SaveAccountCopy { account: owner.clone(), db: owner.db_name().into() });
    }
    if let Some(prev) = &doc.prev_assigned_to {
        if doc.assigned_to.as_ref() != Some(prev) {
            writes.push(Write::DeleteAccountCopy {
                account: prev.clone(),
                db: prev.db_name().into(),
                ignore_missing_db: true,
            });
        }
    }
    writes
}

/// The writes of a hard delete (`knm_numbers:delete/2`, `knm_phone_number:delete/1`).
fn delete_writes(doc: &NumberDoc) -> Vec<Write> {
    let mut writes = Vec::with_capacity(3);
    if let Some(owner) = &doc.assigned_to {
        writes.push(Write::DeleteAccountCopy {
            account: owner.clone(),
            db: owner.db_name().into(),
            ignore_missing_db: false,
        });
    }
    if doc.rev.is_some() {
        if let Some(db) = number_db(doc.id.as_str()) {
            writes.push(Write::DeleteNumber { db });
        }
    }
    if let Some(prev) = &doc.prev_assigned_to {
        if doc.assigned_to.as_ref() != Some(prev) {
            writes.push(Write::DeleteAccountCopy {
                account: prev.clone(),
                db: prev.db_name().into(),
                ignore_missing_db: true,
            });
        }
    }
    writes
}

/// `knm_number_options:mdn_run` `is_mdn_for_mdn_run`: unless `"system"`, `mdn_run` must equal "module is knm_mdn".
fn mdn_guard(doc: &NumberDoc, ctx: &Ctx<'_>) -> Result<(), Error> {
    if matches!(ctx.auth_by, Some(AuthBy::System)) || ctx.mdn_run == doc.is_mdn() {
        Ok(())
    } else {
        Err(Error::unauthorized())
    }
}

/// Finishes a decision that saves (`knm_numbers:save_numbers/1`): dirty test, MDN guard, writes, dry run.
fn finish_save(
    original: Option<&NumberDoc>,
    mut doc: NumberDoc,
    acquire: bool,
    ctx: &Ctx<'_>,
) -> Result<Decision, Error> {
    let dirty = match original {
        None => true,
        Some(orig) => orig.migrated() || !doc.same_content(orig),
    };
    if dirty {
        doc.modified = ctx.now;
    }
    if ctx.dry_run {
        return Ok(Decision {
            doc,
            dirty,
            carrier_call: None,
            provider_calls: Vec::new(),
            writes: Vec::new(),
            dry_run: true,
        });
    }
    if !dirty {
        return Ok(Decision {
            doc,
            dirty,
            carrier_call: None,
            provider_calls: Vec::new(),
            writes: Vec::new(),
            dry_run: false,
        });
    }
    mdn_guard(&doc, ctx)?;
    let carrier_call = acquire.then(|| CarrierCall::Acquire { module: doc.module_name.clone() });
    let writes = save_writes(&doc);
    Ok(Decision { doc, dirty, carrier_call, provider_calls: Vec::new(), writes, dry_run: false })
}

/// Finishes a hard delete: state `deleted`, never saved, documents removed (unless dry run).
fn finish_delete(mut doc: NumberDoc, disconnect: bool, ctx: &Ctx<'_>) -> Decision {
    doc.state = NumberState::Deleted;
    doc.modified = ctx.now;
    if ctx.dry_run {
        return Decision {
            doc,
            dirty: true,
            carrier_call: None,
            provider_calls: Vec::new(),
            writes: Vec::new(),
            dry_run: true,
        };
    }
    let carrier_call =
        disconnect.then(|| CarrierCall::Disconnect { module: doc.module_name.clone() });
    let writes = delete_writes(&doc);
    Decision { doc, dirty: true, carrier_call, provider_calls: Vec::new(), writes, dry_run: false }
}

fn apply_public(doc: &mut NumberDoc, fields: Option<&PublicFields>) {
    match fields {
        Some(PublicFields::Replace(m)) => doc.replace_public(m),
        Some(PublicFields::Merge(m)) => doc.merge_public(m),
        None => {}
    }
}

/// `knm_numbers:create/2` c `state_for_create`.
fn state_for_create(op: &Create, ctx: &Ctx<'_>) -> Result<NumberState, Error> {
    let requested = op.state.unwrap_or(NumberState::InService);
    if requested == NumberState::PortIn {
        return Ok(NumberState::PortIn);
    }
    if op.ported_in || op.module_name.as_deref() == Some(KNM_MDN) {
        return Ok(NumberState::InService);
    }
    if auth::allowed_creation_states(ctx.accounts, ctx.auth_by).contains(&requested) {
        Ok(requested)
    } else {
        Err(Error::Unauthorized { cause: Some("state_for_create".into()) })
    }
}

fn create(
    number: &E164,
    current: Option<&NumberDoc>,
    op: &Create,
    ctx: &Ctx<'_>,
) -> Result<Decision, Error> {
    if let Some(existing) = current {
        gate(existing, op.assign_to.as_ref(), ctx)?;
    }
    let assign_to = require_assign_to(op.assign_to.as_ref())?;
    let target = state_for_create(op, ctx)?;
    match current {
        None => {
            // ensure_can_create/2
            let allowed = match ctx.auth_by {
                None => false,
                Some(AuthBy::System) => true,
                Some(who) => {
                    op.ported_in
                        || target == NumberState::PortIn
                        || auth::allow_number_additions(ctx.accounts, who)
                        || auth::is_admin(ctx.accounts, who)
                }
            };
            if !allowed {
                return Err(Error::unauthorized());
            }
            if !op.ported_in && op.number_is_porting {
                return Err(Error::NumberIsPorting { number: number.to_string() });
            }
            let module = if target == NumberState::PortIn {
                KNM_LOCAL.to_owned()
            } else if op.ported_in {
                ctx.config.port_in_module_name.clone()
            } else if let Some(m) = &op.module_name {
                m.clone()
            } else {
                ctx.config.available_module_name.clone()
            };
            let mut doc = NumberDoc::new(number, target, &module, ctx.now);
            doc.ported_in = op.ported_in;
            if let Some(fields) = &op.public_fields {
                doc.replace_public(fields);
            }
            let acquire = apply_transition(&mut doc, target, Some(&assign_to), ctx)?;
            let calls = providers::save(&mut doc, &ctx.feature_ctx())?;
            Ok(finish_save(None, doc, acquire, ctx)?.with_provider_calls(calls))
        }
        Some(existing) => {
            // ensure_can_load_to_create/1; a `discovery` record (a search hit) is created the way
            // it is bought: the transition to the target state acquires it from its carrier.
            if !matches!(
                existing.state,
                NumberState::Aging
                    | NumberState::Available
                    | NumberState::PortIn
                    | NumberState::Discovery
            ) {
                return Err(Error::NumberExists { number: number.to_string() });
            }
            let mut doc = existing.clone();
            if op.ported_in {
                doc.set_module_name(&ctx.config.port_in_module_name);
                doc.ported_in = true;
            } else if let Some(m) = &op.module_name {
                doc.set_module_name(m);
            }
            if let Some(fields) = &op.public_fields {
                doc.replace_public(fields);
            }
            let acquire = apply_transition(&mut doc, target, Some(&assign_to), ctx)?;
            let calls = providers::save(&mut doc, &ctx.feature_ctx())?;
            Ok(finish_save(Some(existing), doc, acquire, ctx)?.with_provider_calls(calls))
        }
    }
}

fn release(number: &E164, current: Option<&NumberDoc>, ctx: &Ctx<'_>) -> Result<Decision, Error> {
    let existing = loaded(number, current)?;
    gate(existing, None, ctx)?;
    let released_state = ctx.config.released_state;
    let can_release = matches!(
        existing.state,
        NumberState::Released
            | NumberState::Reserved
            | NumberState::PortIn
            | NumberState::InService
    ) || existing.module_name == KNM_LOCAL;
    if !can_release {
        return Err(Error::invalid_transition(
            Some(existing.state.as_str()),
            released_state.as_str(),
        ));
    }
    authorize(existing, None, ctx)?;
    // Step 5 (run first, see docs/kazoo-compat.md): the providers' delete over the features the
    // number had — Kazoo runs it after step 4 reset them, so it never de-provisions anything.
    let calls = providers::delete(&mut existing.clone(), &ctx.feature_ctx())?;
    release_steps(existing, released_state, ctx).map(|d| d.with_provider_calls(calls))
}

/// `knm_numbers:release/2` steps 4 and 6–8 of [`release`].
fn release_steps(
    existing: &NumberDoc,
    released_state: NumberState,
    ctx: &Ctx<'_>,
) -> Result<Decision, Error> {
    let mut doc = existing.clone();
    // Step 4: reset features and public fields.
    doc.reset_features();
    doc.public = Map::new();
    // Step 6: unwind the reserve history.
    if doc.reserve_history.len() >= 2 {
        let new_owner = doc.reserve_history[1].clone();
        doc.set_assigned_to(Some(new_owner));
        doc.reserve_history.remove(0);
        doc.state = NumberState::Reserved;
    } else {
        doc.set_assigned_to(None);
        doc.reserve_history.clear();
        doc.state = released_state;
    }
    if doc.assigned_to.is_some() {
        return finish_save(Some(existing), doc, false, ctx);
    }
    // Steps 7–8: unassigned numbers are disconnected, then deleted or aged.
    if ctx.config.should_permanently_delete || doc.is_local_or_mdn() {
        return Ok(finish_delete(doc, true, ctx));
    }
    if ctx.config.should_age && doc.state == NumberState::Available {
        apply_transition(&mut doc, NumberState::Aging, None, ctx)?;
    }
    let mut decision = finish_save(Some(existing), doc, false, ctx)?;
    if !decision.dry_run {
        decision.carrier_call =
            Some(CarrierCall::Disconnect { module: decision.doc.module_name.clone() });
    }
    Ok(decision)
}

/// Decides one operation on one number (`knm_number_states` and `knm_numbers`).
///
/// `number` is the normalized number; `current` the stored document, already read through
/// [`NumberDoc::from_json`] (`None` if there is none). The result is the would-be document and the
/// effects to perform; under `ctx.dry_run` there are none (`knm_number_options:dry_run`). An unchanged document yields no
/// write (`knm_phone_number`'s dirty tracking).
///
/// # Errors
/// The `knm_errors` errors of the operation: `not_found` when a document is needed and missing,
/// `forbidden` (read gate `knm_phone_number:handle_fetch/2`, authorization, MDN guard `knm_number_options:mdn_run`, admin-only delete),
/// `invalid_state_transition`, `no_change_required`, `number_exists`, `number_is_porting`,
/// `assign_failure`.
pub fn transition(
    number: &E164,
    current: Option<&NumberDoc>,
    op: &Operation,
    ctx: &Ctx<'_>,
) -> Result<Decision, Error> {
    match op {
        Operation::Get => {
            let doc = loaded(number, current)?;
            gate(doc, None, ctx)?;
            Ok(Decision {
                doc: doc.clone(),
                dirty: doc.migrated(),
                carrier_call: None,
                provider_calls: Vec::new(),
                writes: Vec::new(),
                dry_run: ctx.dry_run,
            })
        }
        Operation::Create(c) => create(number, current, c, ctx),
        Operation::Move(m) => {
            let existing = loaded(number, current)?;
            gate(existing, m.assign_to.as_ref(), ctx)?;
            let assign_to = require_assign_to(m.assign_to.as_ref())?;
            let mut doc = existing.clone();
            apply_public(&mut doc, m.public_fields.as_ref());
            if let Some(module) = &m.module_name {
                doc.set_module_name(module);
            }
            if let Some(p) = m.ported_in {
                doc.ported_in = p;
            }
            let acquire =
                apply_transition(&mut doc, NumberState::InService, Some(&assign_to), ctx)?;
            let calls = providers::save(&mut doc, &ctx.feature_ctx())?;
            Ok(finish_save(current.filter(|d| d.rev.is_some()), doc, acquire, ctx)?
                .with_provider_calls(calls))
        }
        Operation::Reserve { assign_to } => {
            let existing = loaded(number, current)?;
            gate(existing, assign_to.as_ref(), ctx)?;
            let assign_to = require_assign_to(assign_to.as_ref())?;
            let mut doc = existing.clone();
            let acquire = apply_transition(&mut doc, NumberState::Reserved, Some(&assign_to), ctx)?;
            let calls = providers::save(&mut doc, &ctx.feature_ctx())?;
            Ok(finish_save(current.filter(|d| d.rev.is_some()), doc, acquire, ctx)?
                .with_provider_calls(calls))
        }
        Operation::Update(u) => {
            let existing = loaded(number, current)?;
            gate(existing, None, ctx)?;
            let mut doc = existing.clone();
            apply_public(&mut doc, u.public_fields.as_ref());
            if let Some(p) = u.ported_in {
                doc.ported_in = p;
            }
            if let Some(app) = u.used_by.as_ref().filter(|a| !a.is_empty()) {
                doc.used_by = Some(app.clone());
            }
            let fctx = ctx.feature_ctx();
            if u.remove_denied_features {
                providers::remove_denied_features(&mut doc, &fctx);
            }
            let calls = providers::save(&mut doc, &fctx)?;
            Ok(finish_save(Some(existing), doc, false, ctx)?.with_provider_calls(calls))
        }
        Operation::AssignToApp { used_by } => {
            let existing = loaded(number, current)?;
            gate(existing, None, ctx)?;
            let mut doc = existing.clone();
            doc.used_by = used_by.clone().filter(|u| !u.is_empty());
            finish_save(Some(existing), doc, false, ctx)
        }
        Operation::Release => release(number, current, ctx),
        Operation::Delete => {
            let is_admin = ctx.auth_by.is_some_and(|a| auth::is_admin(ctx.accounts, a));
            if !is_admin {
                return Err(Error::unauthorized());
            }
            let existing = loaded(number, current)?;
            gate(existing, None, ctx)?;
            let mut doc = existing.clone();
            let calls = providers::delete(&mut doc, &ctx.feature_ctx())?;
            Ok(finish_delete(existing.clone(), false, ctx).with_provider_calls(calls))
        }
        Operation::Reconcile { assign_to, module_name, public_fields } => {
            let assign_to = require_assign_to(assign_to.as_ref())?;
            let system = Ctx { auth_by: Some(&AuthBy::System), ..*ctx };
            let mut doc = match current {
                Some(existing) => existing.clone(),
                None => NumberDoc::new(
                    number,
                    NumberState::InService,
                    module_name.as_deref().unwrap_or(&ctx.config.available_module_name),
                    ctx.now,
                ),
            };
            doc.set_assigned_to(Some(assign_to));
            if let Some(fields) = public_fields {
                doc.merge_public(fields);
            }
            doc.state = NumberState::InService;
            if let Some(m) = module_name {
                doc.set_module_name(m);
            }
            match current {
                Some(existing) => finish_save(Some(existing), doc, false, &system),
                None => Ok(Decision {
                    doc,
                    dirty: true,
                    carrier_call: None,
                    provider_calls: Vec::new(),
                    writes: Vec::new(),
                    dry_run: ctx.dry_run,
                }),
            }
        }
        Operation::ChangeState { target, assign_to } => {
            let existing = loaded(number, current)?;
            gate(existing, assign_to.as_ref(), ctx)?;
            let mut doc = existing.clone();
            let acquire = apply_transition(&mut doc, *target, assign_to.as_ref(), ctx)?;
            finish_save(Some(existing), doc, acquire, ctx)
        }
    }
}

#[cfg(test)]
mod tests;
