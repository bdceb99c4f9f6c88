//! Authorization predicates over account documents (`knm_phone_number`'s authorization, `knm_phone_number.erl`,
//! `knm_number.erl`), fed by the caller: the core never fetches an account.

use std::collections::HashMap;

use serde_json::Value;

use crate::account::AccountId;
use crate::doc::NumberState;
use crate::error::Error;

/// Who performs an operation (`auth_by`): the internal bypass `"system"`, or an account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuthBy {
    /// `"system"`: bypasses every check (`knm_phone_number:is_admin`).
    System,
    /// An account.
    Account(AccountId),
}

impl AuthBy {
    /// Reads `"system"` or an account id.
    ///
    /// # Errors
    /// [`Error::InvalidAccountId`] for anything else.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        if raw == "system" {
            Ok(AuthBy::System)
        } else {
            Ok(AuthBy::Account(AccountId::parse(raw)?))
        }
    }

    /// `"system"` or the account id.
    pub fn as_str(&self) -> &str {
        match self {
            AuthBy::System => "system",
            AuthBy::Account(a) => a.as_str(),
        }
    }
}

/// What `knm_phone_number`'s authorization needs from one account document of the `accounts` database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    /// `_id`.
    pub id: AccountId,
    /// `pvt_tree`: the ancestors, root first.
    pub tree: Vec<AccountId>,
    /// `pvt_superduper_admin`.
    pub superduper_admin: bool,
    /// `pvt_wnm_allow_additions`.
    pub allow_additions: bool,
    /// `pvt_enabled` (default true; `enabled` is read as a fallback).
    pub enabled: bool,
    /// `pvt_reseller_id`.
    pub reseller_id: Option<AccountId>,
}

impl AccountInfo {
    /// Reads an account document (db `accounts`, or the account's own `_id == account id` doc).
    ///
    /// Booleans are true only when literally `true`; ids in `pvt_tree` that are not account ids are
    /// skipped (Kazoo would not match them either).
    ///
    /// # Errors
    /// [`Error::InvalidAccountId`] if `_id` is missing or not an account id.
    pub fn from_json(doc: &Value) -> Result<Self, Error> {
        let id = AccountId::parse(doc.get("_id").and_then(Value::as_str).unwrap_or(""))?;
        let tree = doc
            .get("pvt_tree")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter().filter_map(|v| v.as_str().and_then(|s| AccountId::parse(s).ok())).collect()
            })
            .unwrap_or_default();
        let flag = |k: &str| doc.get(k).and_then(Value::as_bool);
        Ok(AccountInfo {
            id,
            tree,
            superduper_admin: flag("pvt_superduper_admin").unwrap_or(false),
            allow_additions: flag("pvt_wnm_allow_additions").unwrap_or(false),
            enabled: flag("pvt_enabled").or_else(|| flag("enabled")).unwrap_or(true),
            reseller_id: doc
                .get("pvt_reseller_id")
                .and_then(Value::as_str)
                .and_then(|s| AccountId::parse(s).ok()),
        })
    }
}

/// Account lookup for the predicates. An unknown account is treated as having no privileges and
/// no ancestors (as Kazoo does when the account doc cannot be opened).
pub trait Accounts {
    /// The account, if known.
    fn get(&self, id: &AccountId) -> Option<&AccountInfo>;
}

/// A plain in-memory [`Accounts`].
#[derive(Debug, Clone, Default)]
pub struct AccountMap(HashMap<AccountId, AccountInfo>);

impl AccountMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an account.
    pub fn insert(&mut self, info: AccountInfo) {
        self.0.insert(info.id.clone(), info);
    }
}

impl FromIterator<AccountInfo> for AccountMap {
    fn from_iter<T: IntoIterator<Item = AccountInfo>>(iter: T) -> Self {
        let mut m = AccountMap::new();
        for info in iter {
            m.insert(info);
        }
        m
    }
}

impl Accounts for AccountMap {
    fn get(&self, id: &AccountId) -> Option<&AccountInfo> {
        self.0.get(id)
    }
}

/// `knm_phone_number:is_admin` `is_admin(A)`: `"system"`, or an account with `pvt_superduper_admin: true`.
pub fn is_admin(accounts: &dyn Accounts, auth_by: &AuthBy) -> bool {
    match auth_by {
        AuthBy::System => true,
        AuthBy::Account(a) => is_admin_account(accounts, a),
    }
}

fn is_admin_account(accounts: &dyn Accounts, account: &AccountId) -> bool {
    accounts.get(account).is_some_and(|a| a.superduper_admin)
}

/// `kzd_accounts:is_in_account_hierarchy/3` `in_hierarchy(check, of)`: `check == of`, or `check` is an ancestor of `of`
/// (`check ∈ of.pvt_tree`).
pub fn in_hierarchy(accounts: &dyn Accounts, check: &AccountId, of: &AccountId) -> bool {
    check == of || accounts.get(of).is_some_and(|a| a.tree.contains(check))
}

fn is_admin_or_in_hierarchy(accounts: &dyn Accounts, who: &AccountId, of: &AccountId) -> bool {
    is_admin_account(accounts, who) || in_hierarchy(accounts, who, of)
}

/// `knm_phone_number:is_authorized/1` `is_authorized`.
pub fn is_authorized(
    accounts: &dyn Accounts,
    auth_by: Option<&AuthBy>,
    assigned_to: Option<&AccountId>,
    assign_to: Option<&AccountId>,
) -> bool {
    let who = match auth_by {
        None => return false,
        Some(AuthBy::System) => return true,
        Some(AuthBy::Account(a)) => a,
    };
    match (assigned_to, assign_to) {
        (None, None) => is_admin_account(accounts, who),
        (None, Some(target)) => is_admin_or_in_hierarchy(accounts, who, target),
        (Some(owner), _) => is_admin_or_in_hierarchy(accounts, who, owner),
    }
}

/// `knm_number_states:is_reserved_from_parent` `is_reserved_from_parent`: the number is reserved and its owner is the requester or one
/// of its ancestors. Quirk kept (a Kazoo quirk kept for parity): the admin test is applied to the *owner*.
pub fn is_reserved_from_parent(
    accounts: &dyn Accounts,
    auth_by: Option<&AuthBy>,
    state: NumberState,
    assigned_to: Option<&AccountId>,
) -> bool {
    let (Some(owner), NumberState::Reserved) = (assigned_to, state) else { return false };
    match auth_by {
        Some(AuthBy::Account(who)) => is_admin_or_in_hierarchy(accounts, owner, who),
        // Kazoo calls is_in_account_hierarchy(Owner, "system"), which is false; the admin test on
        // the owner still applies.
        Some(AuthBy::System) | None => is_admin_account(accounts, owner),
    }
}

/// `knm_phone_number:handle_fetch/2` read gate (`handle_fetch/2`): `available`, or authorized, or reserved from a parent.
pub fn can_read(
    accounts: &dyn Accounts,
    auth_by: Option<&AuthBy>,
    state: NumberState,
    assigned_to: Option<&AccountId>,
    assign_to: Option<&AccountId>,
) -> bool {
    state == NumberState::Available
        || is_authorized(accounts, auth_by, assigned_to, assign_to)
        || is_reserved_from_parent(accounts, auth_by, state, assigned_to)
}

/// `knm_number:allow_number_additions` `allow_number_additions(A)`: `"system"`, or `pvt_wnm_allow_additions: true`.
pub fn allow_number_additions(accounts: &dyn Accounts, auth_by: &AuthBy) -> bool {
    match auth_by {
        AuthBy::System => true,
        AuthBy::Account(a) => accounts.get(a).is_some_and(|i| i.allow_additions),
    }
}

/// `knm_number:allowed_creation_states/2` `allowed_creation_states`: admin → aging, available, in_service, port_in, reserved;
/// additions allowed → in_service, reserved; otherwise none.
pub fn allowed_creation_states(
    accounts: &dyn Accounts,
    auth_by: Option<&AuthBy>,
) -> Vec<NumberState> {
    let Some(auth_by) = auth_by else { return Vec::new() };
    if is_admin(accounts, auth_by) {
        vec![
            NumberState::Aging,
            NumberState::Available,
            NumberState::InService,
            NumberState::PortIn,
            NumberState::Reserved,
        ]
    } else if allow_number_additions(accounts, auth_by) {
        vec![NumberState::InService, NumberState::Reserved]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    pub(crate) fn acc(n: u8) -> AccountId {
        AccountId::parse(&format!("account000000000000000000000000{n}")).unwrap()
    }

    /// The master fixturedb account docs (MASTER=1 superduper, RESELLER=2, CHILD=3 under both).
    pub(crate) fn fixture_accounts() -> AccountMap {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/numbers/fixturedb/accounts/docs");
        let mut m = AccountMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            m.insert(AccountInfo::from_json(&serde_json::from_str(&text).unwrap()).unwrap());
        }
        m
    }

    /// `knm_phone_number:is_admin` and `kzd_accounts:is_in_account_hierarchy/3` over the fixturedb account documents.
    #[test]
    fn s3_admin_and_hierarchy() {
        let a = fixture_accounts();
        assert!(is_admin(&a, &AuthBy::System));
        assert!(is_admin(&a, &AuthBy::Account(acc(1))));
        assert!(!is_admin(&a, &AuthBy::Account(acc(2))));
        assert!(in_hierarchy(&a, &acc(2), &acc(2)));
        assert!(in_hierarchy(&a, &acc(1), &acc(3)));
        assert!(in_hierarchy(&a, &acc(2), &acc(3)));
        assert!(!in_hierarchy(&a, &acc(3), &acc(2)));
        let unrelated = AccountId::parse("unrelated_account_b113394f16cb71").unwrap();
        assert!(!in_hierarchy(&a, &unrelated, &acc(2)));
    }

    /// `knm_phone_number:is_authorized/1` and `knm_number_states:authorize_subaccount` and vector D2/D4 predicates.
    #[test]
    fn s3_authorized_and_reserved_from_parent() {
        let a = fixture_accounts();
        let child = AuthBy::Account(acc(3));
        assert!(!is_authorized(&a, Some(&child), Some(&acc(2)), Some(&acc(3))));
        assert!(is_reserved_from_parent(&a, Some(&child), NumberState::Reserved, Some(&acc(2))));
        assert!(!is_reserved_from_parent(&a, Some(&child), NumberState::InService, Some(&acc(2))));
        assert!(!is_authorized(&a, None, None, None));
        assert!(is_authorized(&a, Some(&AuthBy::System), Some(&acc(2)), None));
        assert!(!is_authorized(&a, Some(&AuthBy::Account(acc(2))), None, None));
        assert!(is_authorized(&a, Some(&AuthBy::Account(acc(2))), None, Some(&acc(3))));
    }

    /// `knm_number:allowed_creation_states/2` and vectors O3–O5.
    #[test]
    fn s3_8_creation_states() {
        let a = fixture_accounts();
        assert_eq!(allowed_creation_states(&a, None), vec![]);
        assert_eq!(allowed_creation_states(&a, Some(&AuthBy::Account(acc(1)))).len(), 5);
        assert_eq!(
            allowed_creation_states(&a, Some(&AuthBy::Account(acc(2)))),
            vec![NumberState::InService, NumberState::Reserved]
        );
        assert_eq!(allowed_creation_states(&a, Some(&AuthBy::Account(acc(3)))), vec![]);
    }
}
