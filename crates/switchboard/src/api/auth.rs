//! Authentication and account scoping: `PUT /v2/api_auth` (an account's `pvt_api_key` for a
//! token), the in-memory token table, and the rule that a token of account A may act on A and
//! its descendants (`pvt_tree`), a superduper admin (`pvt_superduper_admin`) on everything.
//!
//! Accounts come from the daemon's one live copy of db `accounts` (`docstore::live`), so this
//! works the same on CouchDB and the embedded store (no views) and sees an account disabled
//! anywhere as soon as the feed delivers it. Tokens are signed (`token.rs`): every instance that
//! shares the store accepts every instance's tokens, until they expire or their account is
//! disabled or deleted.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::StatusCode;
use docstore::{Derived, LiveDocs, LiveSnapshot};
use serde_json::{json, Value};

use super::body::CrossbarBody;
use super::envelope::{Envelope, AUTH_TOKEN_HEADER};
use super::error::ApiError;
use super::token::{Refused, TokenKey};
use super::AppState;

/// What the API needs to know of an account document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccountEntry {
    /// The account id (`_id`).
    pub(crate) id: String,
    /// `name`.
    pub(crate) name: Option<String>,
    /// `pvt_api_key`.
    pub(crate) api_key: Option<String>,
    /// `pvt_tree`: the ancestors, root first.
    pub(crate) tree: Vec<String>,
    /// `pvt_superduper_admin`.
    pub(crate) superduper: bool,
    /// `pvt_enabled` (absent means enabled, as in Kazoo).
    pub(crate) enabled: bool,
    /// `pvt_reseller_id`.
    pub(crate) reseller_id: Option<String>,
    /// `pvt_reseller` / `is_reseller`.
    pub(crate) is_reseller: bool,
}

impl AccountEntry {
    /// Reads an account document; `None` for design docs and documents of another type.
    pub(crate) fn from_doc(doc: &Value) -> Option<AccountEntry> {
        let id = doc.get("_id")?.as_str()?;
        if id.starts_with("_design/") {
            return None;
        }
        if doc.get("pvt_type").and_then(Value::as_str).is_some_and(|t| t != "account") {
            return None;
        }
        let string = |key: &str| doc.get(key).and_then(Value::as_str).map(str::to_owned);
        let flag = |key: &str| doc.get(key).and_then(Value::as_bool).unwrap_or(false);
        Some(AccountEntry {
            id: id.to_owned(),
            name: string("name"),
            api_key: string("pvt_api_key").filter(|k| !k.is_empty()),
            tree: doc
                .get("pvt_tree")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
            superduper: flag("pvt_superduper_admin"),
            enabled: doc.get("pvt_enabled").and_then(Value::as_bool).unwrap_or(true),
            reseller_id: string("pvt_reseller_id"),
            is_reseller: flag("pvt_reseller") || flag("is_reseller"),
        })
    }
}

/// The accounts, by id, of one snapshot of the live `accounts` database.
#[derive(Debug, Default)]
pub(crate) struct AccountIndex {
    by_id: HashMap<String, AccountEntry>,
}

impl AccountIndex {
    /// The accounts of a snapshot of db `accounts`.
    fn from_snapshot(snapshot: &LiveSnapshot) -> AccountIndex {
        let by_id = snapshot
            .docs()
            .filter_map(AccountEntry::from_doc)
            .map(|entry| (entry.id.clone(), entry))
            .collect();
        AccountIndex { by_id }
    }

    /// The account with this id.
    pub(crate) fn get(&self, id: &str) -> Option<&AccountEntry> {
        self.by_id.get(id)
    }

    /// The accounts whose `pvt_api_key` is `key`. Kazoo's fixtures give several accounts one
    /// key; the one highest in the tree (fewest ancestors) wins, then the smallest id, so the
    /// answer does not depend on hash order.
    pub(crate) fn by_api_key(&self, key: &str) -> Option<&AccountEntry> {
        self.by_id
            .values()
            .filter(|a| a.api_key.as_deref() == Some(key))
            .min_by(|a, b| a.tree.len().cmp(&b.tree.len()).then_with(|| a.id.cmp(&b.id)))
    }

    /// How many accounts are known.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// Accounts (the live `accounts` database) and signed tokens.
#[derive(Debug)]
pub(crate) struct Auth {
    accounts: Derived<AccountIndex>,
    key: TokenKey,
    lifetime: Duration,
}

/// Who a request is from: the token's account.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The token's account.
    pub(crate) account_id: String,
    /// Whether that account is a superduper admin.
    pub(crate) superduper: bool,
}

impl Auth {
    /// Accounts read from `accounts` (the live `accounts` database); tokens signed with `key`,
    /// lasting `lifetime`.
    pub(crate) fn new(accounts: LiveDocs, key: TokenKey, lifetime: Duration) -> Auth {
        Auth { accounts: Derived::new(accounts, AccountIndex::from_snapshot), key, lifetime }
    }

    /// Whether the live `accounts` database has been read in full at least once.
    pub(crate) fn is_caught_up(&self) -> bool {
        self.accounts.source().is_caught_up()
    }

    /// The accounts follower's health and the account documents it could not decode.
    pub(crate) fn board(&self) -> &docstore::FeedBoard {
        self.accounts.source().board()
    }

    /// How many accounts are known.
    pub(crate) fn account_count(&self) -> usize {
        self.accounts.get().len()
    }

    /// An account entry, cloned.
    pub(crate) fn account(&self, id: &str) -> Option<AccountEntry> {
        self.accounts.get().get(id).cloned()
    }

    /// Issues a token for the account whose api key this is.
    ///
    /// # Errors
    /// 401 for an unknown key or a disabled account.
    pub(crate) fn login(&self, api_key: &str) -> Result<(String, AccountEntry), ApiError> {
        let Some(account) = self.accounts.get().by_api_key(api_key).cloned() else {
            return Err(ApiError::InvalidCredentials("no account has this api key"));
        };
        if !account.enabled {
            return Err(ApiError::InvalidCredentials("the account is disabled"));
        }
        let token = self.key.sign(&account.id, self.lifetime);
        Ok((token, account))
    }

    /// The caller a token stands for.
    ///
    /// # Errors
    /// 401 for a missing, invalid or expired token, or one whose account is gone or disabled.
    pub(crate) fn caller(&self, token: Option<&str>) -> Result<Caller, ApiError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(ApiError::InvalidCredentials("no X-Auth-Token header"));
        };
        let claims = match self.key.verify(token) {
            Ok(claims) => claims,
            Err(Refused::Invalid) => {
                return Err(ApiError::InvalidCredentials("unknown auth token"))
            }
            Err(Refused::Expired) => {
                return Err(ApiError::InvalidCredentials("the auth token has expired"))
            }
        };
        match self.account(&claims.account_id) {
            Some(account) if account.enabled => {
                Ok(Caller { account_id: account.id, superduper: account.superduper })
            }
            Some(_) => Err(ApiError::InvalidCredentials("the account is disabled")),
            None => Err(ApiError::InvalidCredentials("the token's account no longer exists")),
        }
    }

    /// Whether `caller` may act on account `target`: itself, a descendant (`target`'s
    /// `pvt_tree` names the caller) or anything for a superduper admin.
    ///
    /// # Errors
    /// 403 for an account outside the caller's tree; 404 for an unknown account when the
    /// caller could see it (a superduper admin), 403 otherwise (so a foreign token learns
    /// nothing about which accounts exist).
    pub(crate) fn authorize(&self, caller: &Caller, target: &str) -> Result<(), ApiError> {
        let account = self.account(target);
        match account {
            None if caller.superduper => Err(ApiError::BadIdentifier(target.to_owned())),
            None => Err(ApiError::Forbidden(format!("account {target} is not in your tree"))),
            Some(_) if caller.superduper || caller.account_id == target => Ok(()),
            Some(account) if account.tree.contains(&caller.account_id) => Ok(()),
            Some(_) => Err(ApiError::Forbidden(format!("account {target} is not in your tree"))),
        }
    }

    /// Refuses anyone but a superduper admin.
    ///
    /// # Errors
    /// 403.
    pub(crate) fn require_superduper(caller: &Caller) -> Result<(), ApiError> {
        if caller.superduper {
            Ok(())
        } else {
            Err(ApiError::Forbidden("only a superduper admin may do this".into()))
        }
    }
}

/// The token of a request: `X-Auth-Token`, else `Authorization: Bearer …`.
pub(crate) fn token_of(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(AUTH_TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_owned());
    }
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|v| v.trim().to_owned())
}

/// `PUT /v2/api_auth` with `{"data": {"api_key": K}}`: 201 with the token in `auth_token` and
/// the account's summary in `data` (Kazoo's `cb_api_auth`).
pub(crate) async fn api_auth(
    State(state): State<AppState>,
    CrossbarBody(body): CrossbarBody,
) -> Result<Envelope, ApiError> {
    // The router has checked the body against the `api_auth` schema: a non-empty string.
    let api_key = body.get("api_key").and_then(Value::as_str).unwrap_or_default();
    if !state.auth.is_caught_up() {
        return Err(ApiError::Datastore {
            status: StatusCode::SERVICE_UNAVAILABLE,
            key: "datastore_unreachable",
            cause: "the accounts are still being read; try again shortly".into(),
        });
    }
    let (token, account) = state.auth.login(api_key)?;
    metrics::counter!("switchboard_api_auth_total").increment(1);
    let data = json!({
        "account_id": account.id,
        "account_name": account.name,
        "is_reseller": account.is_reseller,
        "reseller_id": account.reseller_id,
        "apps": [],
    });
    Ok(Envelope::created(data).with_auth_token(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new(vec![3; 32]).unwrap()
    }

    fn auth_with(docs: &[Value]) -> Auth {
        auth_lasting(docs, Duration::from_secs(60))
    }

    fn auth_lasting(docs: &[Value], lifetime: Duration) -> Auth {
        let accounts = LiveDocs::fixed(docstore::naming::accounts_db(), docs.iter().cloned());
        Auth::new(accounts, key(), lifetime)
    }

    fn account(id: &str, key: &str, tree: &[&str], superduper: bool) -> Value {
        json!({"_id": id, "pvt_type": "account", "pvt_api_key": key, "pvt_tree": tree,
               "pvt_superduper_admin": superduper, "name": id})
    }

    #[test]
    fn tokens_scope_to_the_tree() {
        let auth = auth_with(&[
            account("root", "k-root", &[], true),
            account("reseller", "k-res", &["root"], false),
            account("child", "k-child", &["root", "reseller"], false),
            account("other", "k-other", &["root"], false),
        ]);
        let (token, entry) = auth.login("k-res").unwrap();
        assert_eq!(entry.id, "reseller");
        let caller = auth.caller(Some(&token)).unwrap();
        assert!(auth.authorize(&caller, "reseller").is_ok());
        assert!(auth.authorize(&caller, "child").is_ok());
        assert!(matches!(auth.authorize(&caller, "other"), Err(ApiError::Forbidden(_))));
        assert!(matches!(auth.authorize(&caller, "root"), Err(ApiError::Forbidden(_))));
        assert!(matches!(auth.authorize(&caller, "nope"), Err(ApiError::Forbidden(_))));

        let (admin, _) = auth.login("k-root").unwrap();
        let admin = auth.caller(Some(&admin)).unwrap();
        assert!(auth.authorize(&admin, "other").is_ok());
        assert!(matches!(auth.authorize(&admin, "nope"), Err(ApiError::BadIdentifier(_))));
        assert!(Auth::require_superduper(&admin).is_ok());
        assert!(Auth::require_superduper(&caller).is_err());
    }

    #[test]
    fn bad_keys_and_tokens_are_401() {
        let auth = auth_with(&[account("a", "k", &[], false)]);
        assert!(matches!(auth.login("wrong"), Err(ApiError::InvalidCredentials(_))));
        assert!(matches!(auth.caller(None), Err(ApiError::InvalidCredentials(_))));
        assert!(matches!(auth.caller(Some("made-up")), Err(ApiError::InvalidCredentials(_))));
        // Signed with another key: another deployment's token.
        let foreign = TokenKey::new(vec![4; 32]).unwrap().sign("a", Duration::from_secs(60));
        assert!(matches!(auth.caller(Some(&foreign)), Err(ApiError::InvalidCredentials(_))));
    }

    #[test]
    fn tokens_expire() {
        // A lifetime under a second expires at the second it was issued in.
        let auth = auth_lasting(&[account("a", "k", &[], false)], Duration::from_millis(1));
        let (token, _) = auth.login("k").unwrap();
        assert!(matches!(
            auth.caller(Some(&token)),
            Err(ApiError::InvalidCredentials("the auth token has expired"))
        ));
    }

    #[test]
    fn tokens_hold_on_another_instance_until_the_account_is_disabled_or_deleted() {
        let issuing = auth_with(&[account("a", "k", &[], false)]);
        let (token, _) = issuing.login("k").unwrap();
        // Another instance with the same key and accounts accepts it.
        let other = auth_with(&[account("a", "k", &[], false)]);
        assert_eq!(other.caller(Some(&token)).unwrap().account_id, "a");
        let mut disabled = account("a", "k", &[], false);
        disabled["pvt_enabled"] = json!(false);
        let other = auth_with(&[disabled]);
        assert!(matches!(
            other.caller(Some(&token)),
            Err(ApiError::InvalidCredentials("the account is disabled"))
        ));
        assert!(other.login("k").is_err());
        let other = auth_with(&[]);
        assert!(other.caller(Some(&token)).is_err());
    }

    #[test]
    fn shared_keys_pick_the_top_account() {
        let auth = auth_with(&[
            account(
                "account0000000000000000000000002",
                "k",
                &["account0000000000000000000000001"],
                false,
            ),
            account("account0000000000000000000000001", "k", &[], true),
        ]);
        assert_eq!(auth.login("k").unwrap().1.id, "account0000000000000000000000001");
    }
}
