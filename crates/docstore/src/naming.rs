//! Kazoo's database naming: account ids and their databases, number databases, global databases.
//!
//! Kazoo keeps one database per account (`account/ab/cd/ef0123…`), one per 5-character number
//! prefix (`numbers/+1415`) and a few global ones (`offnet`, `accounts`, `system_config`, …).
//! On the wire the `/` and `+` are percent-encoded (`account%2Fab%2Fcd%2Fef0123…`,
//! `numbers%2F%2B1415`): Kazoo calls that the *encoded* form and uses it in logs, documents
//! (`pvt_db_name`) and APIs. Inside Switchboard a [`DbName`] is always unencoded; [`encoded`] and
//! [`decode_db_name`] convert.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::DbName;

/// The global carrier resources database (Kazoo's `?RESOURCES_DB`).
pub const OFFNET: &str = "offnet";
/// The account definitions database (Kazoo's `?KZ_ACCOUNTS_DB`).
pub const ACCOUNTS: &str = "accounts";
/// The system configuration database (Kazoo's `?KZ_CONFIG_DB`).
pub const SYSTEM_CONFIG: &str = "system_config";
/// The rate deck database (Kazoo's `?KZ_RATES_DB`).
pub const RATEDECK: &str = "ratedeck";
/// The global SIP credentials database (Kazoo's `?KZ_SIP_DB`); it also carries `_design/resources`.
pub const SIP_AUTH: &str = "sip_auth";
/// The number database of the `knm_managed` carrier (`knm_converters:to_db/1`).
pub const NUMBERS_MANAGED: &str = "numbers/managed";
/// The number database of the `knm_inum` carrier (`knm_converters:to_db/1`).
pub const NUMBERS_INUM: &str = "numbers/inum";
/// The prefix every number database name starts with (`knm_converters:to_db/1`).
pub const NUMBERS_PREFIX: &str = "numbers/";
/// The prefix every account database name starts with.
pub const ACCOUNT_PREFIX: &str = "account/";

fn global(name: &'static str) -> DbName {
    DbName::new(name).expect("the global database names are valid CouchDB names")
}

/// The `offnet` database.
pub fn offnet_db() -> DbName {
    global(OFFNET)
}

/// The `accounts` database.
pub fn accounts_db() -> DbName {
    global(ACCOUNTS)
}

/// The `system_config` database.
pub fn system_config_db() -> DbName {
    global(SYSTEM_CONFIG)
}

/// The `ratedeck` database.
pub fn ratedeck_db() -> DbName {
    global(RATEDECK)
}

/// The `sip_auth` database.
pub fn sip_auth_db() -> DbName {
    global(SIP_AUTH)
}

/// A Kazoo account id: exactly 32 characters, each a lowercase ASCII letter, a digit or `_`,
/// checked once when built. The one account-id type of the workspace (the numbers crate and the
/// API use it too).
///
/// Kazoo's own guard (`?MATCH_ACCOUNT_RAW`) only checks for 32 bytes. Every id Kazoo generates is
/// a lowercase hex UUID, and Kazoo's fixtures use ids such as `account0000000000000000000000001`
/// (the master account of its tests) and `reseller_account_b113394f16cb76d`, so letters and `_`
/// are accepted. What is refused could never name an account database: CouchDB database names
/// take no uppercase letters, and `/`, `%`, `+`, `-`, spaces or non-ASCII characters would break
/// the `account/ab/cd/…` name (or make it read as a monthly database, `…-YYYYMM`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    /// Accepts the raw id only (`ef0123…`, 32 characters), as Kazoo's `?MATCH_ACCOUNT_RAW`
    /// guards do where an account id is required (`assign_to`, `auth_by`, an account document's
    /// `_id`, an API path's `{account_id}`).
    ///
    /// # Errors
    /// [`Error::InvalidAccountId`] naming the input.
    pub fn parse(raw: &str) -> Result<Self> {
        if is_raw_account_id(raw) {
            Ok(AccountId(raw.to_owned()))
        } else {
            Err(Error::InvalidAccountId { value: raw.to_owned() })
        }
    }

    /// Accepts the raw id (`ef0123…`, 32 characters), the unencoded database name
    /// (`account/ef/01/23…`) and the encoded one (`account%2Fef%2F01%2F23…`, `%2f` too), like
    /// Kazoo's `kz_util:format_account_id/1`.
    ///
    /// # Errors
    /// [`Error::InvalidAccountId`] naming the input when it is none of these.
    pub fn new(input: &str) -> Result<Self> {
        let raw = if let Some(rest) = input.strip_prefix(ACCOUNT_PREFIX) {
            unsplit(rest, "/")
        } else if input.get(..10).is_some_and(|p| p.eq_ignore_ascii_case("account%2f")) {
            unsplit(&input[10..], "%2f")
        } else {
            Some(input.to_owned())
        };
        match raw {
            Some(raw) if is_raw_account_id(&raw) => Ok(AccountId(raw)),
            _ => Err(Error::InvalidAccountId { value: input.to_owned() }),
        }
    }

    /// The account whose database this is (`account/ab/cd/…`).
    ///
    /// # Errors
    /// [`Error::BadRequest`] if `db` is not an account database.
    pub fn from_db_name(db: &DbName) -> Result<Self> {
        if !db.as_str().starts_with(ACCOUNT_PREFIX) {
            return Err(Error::BadRequest {
                reason: format!("database {db} is not an account database"),
            });
        }
        AccountId::new(db.as_str())
    }

    /// The raw id, 32 characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The account's database, `account/ab/cd/rest`.
    pub fn db_name(&self) -> DbName {
        let id = &self.0;
        DbName::new(format!("{ACCOUNT_PREFIX}{}/{}/{}", &id[..2], &id[2..4], &id[4..]))
            .expect("an account database name built from [a-z0-9_] is a valid CouchDB name")
    }

    /// Kazoo's encoded database form, `account%2Fab%2Fcd%2Frest` (`kz_util:format_account_id/2`
    /// with `encoded`), as found in `pvt_account_db` fields.
    pub fn encoded(&self) -> String {
        encoded(&self.db_name())
    }
}

/// `rest` must be `ab<sep>cd<sep>28 chars`; returns the 32 characters joined.
fn unsplit(rest: &str, sep: &str) -> Option<String> {
    if !rest.is_ascii() {
        return None;
    }
    let lower = rest.to_ascii_lowercase();
    let sep_len = sep.len();
    if rest.len() != 2 + sep_len + 2 + sep_len + 28
        || lower[2..2 + sep_len] != *sep
        || lower[4 + sep_len..4 + 2 * sep_len] != *sep
    {
        return None;
    }
    Some(format!("{}{}{}", &rest[..2], &rest[2 + sep_len..4 + sep_len], &rest[4 + 2 * sep_len..]))
}

fn is_raw_account_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'z' | b'_'))
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AccountId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        AccountId::new(s)
    }
}

impl TryFrom<String> for AccountId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        AccountId::new(&s)
    }
}

impl From<AccountId> for String {
    fn from(a: AccountId) -> String {
        a.0
    }
}

/// The database of an account, `account/ab/cd/rest` (same as [`AccountId::db_name`]).
pub fn account_db(account: &AccountId) -> DbName {
    account.db_name()
}

/// The database holding a number (`knm_converters:to_db/1`, `knm_converters:to_db/1`): `numbers/`
/// followed by the first 5 characters of the number as given — normalized `+14158867900` gives
/// `numbers/+1415`, a number that was not normalized is used as is (`14158867900` gives
/// `numbers/14158`).
///
/// `None` where Kazoo gives `undefined` (fewer than 5 characters) and where the prefix would not be
/// a valid database name (letters, spaces: such inputs are not reconcilable numbers anyway).
pub fn numbers_db(number: &str) -> Option<DbName> {
    let prefix = number.get(..5)?;
    DbName::new(format!("{NUMBERS_PREFIX}{prefix}")).ok()
}

/// Whether `db` is a number database (`numbers/…`, including `numbers/managed` and `numbers/inum`),
/// as `knm_util:get_all_number_dbs/0` selects them.
pub fn is_numbers_db(db: &DbName) -> bool {
    db.as_str().starts_with(NUMBERS_PREFIX)
}

/// Whether `db` is an account database (`account/ab/cd/…` with a valid account id).
pub fn is_account_db(db: &DbName) -> bool {
    AccountId::from_db_name(db).is_ok()
}

/// The account of one of its monthly databases (Kazoo's MODBs, `account/ab/cd/…-YYYYMM`, which
/// hold call records and ledgers), or `None` when `db` is not one.
pub fn monthly_db_account(db: &DbName) -> Option<AccountId> {
    let (account_db, month) = db.as_str().rsplit_once('-')?;
    if month.len() != 6 || !month.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    account_db.strip_prefix(ACCOUNT_PREFIX)?;
    AccountId::new(account_db).ok()
}

/// Kazoo's (and CouchDB's URL) encoded form of a database name: every character other than
/// `a-z`, `0-9`, `_` and `-` percent-encoded in uppercase hex (`numbers%2F%2B1415`).
pub fn encoded(db: &DbName) -> String {
    let mut out = String::with_capacity(db.as_str().len() + 8);
    for b in db.as_str().bytes() {
        if matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads a database name in either form, encoded (`numbers%2F%2B1415`, any hex case) or not.
///
/// # Errors
/// [`Error::IllegalDbName`] if the decoded name breaks CouchDB's rules, [`Error::BadRequest`] for
/// a broken `%` escape.
pub fn decode_db_name(input: &str) -> Result<DbName> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = input.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(b) = hex else {
                return Err(Error::BadRequest {
                    reason: format!("broken percent escape in database name {input:?}"),
                });
            };
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(out).map_err(|_| Error::BadRequest {
        reason: format!("database name {input:?} does not decode to UTF-8"),
    })?;
    DbName::new(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "ef0123456789abcdef0123456789abcd";

    #[test]
    fn account_id_accepts_the_three_forms() {
        let raw = AccountId::new(ID).unwrap();
        assert_eq!(raw.as_str(), ID);
        let unencoded = AccountId::new("account/ef/01/23456789abcdef0123456789abcd").unwrap();
        let encoded_upper = AccountId::new("account%2Fef%2F01%2F23456789abcdef0123456789abcd");
        let encoded_lower = AccountId::new("account%2fef%2f01%2f23456789abcdef0123456789abcd");
        assert_eq!(unencoded, raw);
        assert_eq!(encoded_upper.unwrap(), raw);
        assert_eq!(encoded_lower.unwrap(), raw);
    }

    #[test]
    fn account_id_refuses_everything_else() {
        for bad in [
            "",
            "ef0123456789abcdef0123456789abc",   // 31
            "ef0123456789abcdef0123456789abcde", // 33
            "EF0123456789ABCDEF0123456789ABCD",  // uppercase
            "ef0123456789abcdef0123456789abc-",  // not a database name's character
            "ef0123456789abcdef0123456789abc/",
            "ef0123456789abcdef0123456789abc%",
            "ef0123456789abcdef0123456789ab\u{e9}",
            "account/ef/0123456789abcdef0123456789abcd", // one split only
            "account/ef/01/23456789abcdef0123456789abcd-202401", // an MODB
            "account%2Fef%2F01%2F23456789abcdef0123456789abc",
        ] {
            let err = AccountId::new(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidAccountId { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("32 lowercase letters"), "{err}");
            assert!(AccountId::parse(bad).is_err(), "{bad}");
        }
    }

    /// Kazoo's test fixtures' ids (letters, digits, `_`) are accounts too; `parse` takes the raw
    /// form only.
    #[test]
    fn account_id_takes_kazoos_fixture_ids_and_parse_takes_raw_only() {
        for id in ["account0000000000000000000000001", "unrelated_account_b113394f16cb71", ID] {
            assert_eq!(AccountId::parse(id).unwrap().as_str(), id);
            assert_eq!(AccountId::new(id).unwrap().as_str(), id);
        }
        let id = AccountId::parse("account0000000000000000000000002").unwrap();
        assert_eq!(id.db_name().as_str(), "account/ac/co/unt0000000000000000000000002");
        assert_eq!(id.encoded(), "account%2Fac%2Fco%2Funt0000000000000000000000002");
        assert_eq!(AccountId::new(id.db_name().as_str()).unwrap(), id);
        assert!(AccountId::parse(id.db_name().as_str()).is_err());
        assert!(AccountId::parse(&id.encoded()).is_err());
    }

    #[test]
    fn account_db_names() {
        let id = AccountId::new(ID).unwrap();
        assert_eq!(account_db(&id).as_str(), "account/ef/01/23456789abcdef0123456789abcd");
        assert_eq!(id.encoded(), "account%2Fef%2F01%2F23456789abcdef0123456789abcd");
        assert_eq!(AccountId::from_db_name(&id.db_name()).unwrap(), id);
        assert!(AccountId::from_db_name(&offnet_db()).is_err());
        assert!(is_account_db(&id.db_name()));
        assert!(!is_account_db(&DbName::new("accounts").unwrap()));
        let modb = DbName::new(format!("{}-202401", id.db_name())).unwrap();
        assert!(!is_account_db(&modb));
        assert_eq!(monthly_db_account(&modb), Some(id.clone()));
        assert_eq!(monthly_db_account(&id.db_name()), None);
        let odd = DbName::new(format!("{}-2024", id.db_name())).unwrap();
        assert_eq!(monthly_db_account(&odd), None);
    }

    #[test]
    fn account_id_serde_checks() {
        let id: AccountId = serde_json::from_value(serde_json::json!(ID)).unwrap();
        assert_eq!(serde_json::to_value(&id).unwrap(), serde_json::json!(ID));
        assert!(serde_json::from_value::<AccountId>(serde_json::json!("nope")).is_err());
    }

    /// Kazoo's number vectors A4.
    #[test]
    fn a4_number_db_names() {
        let db = numbers_db("+14158867900").unwrap();
        assert_eq!(db.as_str(), "numbers/+1415");
        assert_eq!(encoded(&db), "numbers%2F%2B1415");
        assert_eq!(encoded(&numbers_db("14158867900").unwrap()), "numbers%2F14158");
        assert_eq!(numbers_db("1234"), None);
        assert_eq!(numbers_db("+1415").unwrap().as_str(), "numbers/+1415");
        assert_eq!(numbers_db("NOT a number"), None);
        assert!(is_numbers_db(&db));
        assert!(is_numbers_db(&DbName::new(NUMBERS_MANAGED).unwrap()));
        assert!(!is_numbers_db(&offnet_db()));
    }

    #[test]
    fn encoding_round_trips() {
        for name in ["numbers/+1415", "account/ef/01/23456789abcdef0123456789abcd", "a$(b)"] {
            let db = DbName::new(name).unwrap();
            assert_eq!(decode_db_name(&encoded(&db)).unwrap(), db);
            assert_eq!(decode_db_name(name).unwrap(), db);
        }
        assert_eq!(decode_db_name("numbers%2f%2b1415").unwrap().as_str(), "numbers/+1415");
        assert!(matches!(decode_db_name("numbers%2"), Err(Error::BadRequest { .. })));
        assert!(matches!(decode_db_name("Numbers"), Err(Error::IllegalDbName { .. })));
    }

    #[test]
    fn global_names() {
        assert_eq!(offnet_db().as_str(), "offnet");
        assert_eq!(accounts_db().as_str(), "accounts");
        assert_eq!(system_config_db().as_str(), "system_config");
        assert_eq!(ratedeck_db().as_str(), "ratedeck");
        assert_eq!(sip_auth_db().as_str(), "sip_auth");
    }
}
