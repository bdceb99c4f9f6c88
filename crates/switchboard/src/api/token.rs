//! Signed auth tokens, verifiable by every instance that shares the store (as Kazoo's
//! `kazoo_auth` signs its tokens with a key kept in CouchDB).
//!
//! A token is a JSON Web Token signed with HMAC-SHA256 (`HS256`): `header.claims.signature`, each
//! part base64url without padding; the claims are `account_id`, `iat` and `exp` (Unix seconds)
//! and `iss` (`switchboard`). The key is 32 random bytes kept in document
//! [`KEY_DOC_ID`] of database [`KEY_DB`], created by the first instance that finds it missing
//! (a compare-and-swap create: concurrent starts agree on one key) and read by every other.
//! Nothing about a token is kept in memory: any instance verifies any instance's token, and a
//! restart invalidates none. Changing the key (deleting the document and restarting every
//! instance) invalidates every token.
//!
//! Verifying checks the signature (constant time), the header (only `HS256` is accepted, so a
//! token cannot pick a weaker algorithm) and the expiry; the account's state is the caller's
//! business ([`super::auth::Auth::caller`] refuses a disabled or deleted account).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use docstore::{DbName, SharedStore};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

/// The database of the signing key (Kazoo's `kazoo_auth` keeps its keys in `system_auth`).
pub(crate) const KEY_DB: &str = "system_auth";
/// The signing key's document id.
pub(crate) const KEY_DOC_ID: &str = "switchboard_token_key";
/// The issuer claim.
const ISSUER: &str = "switchboard";
/// The header of every token: `{"alg":"HS256","typ":"JWT"}`.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
/// Key length in bytes (HMAC-SHA256's block-sized key strength).
const KEY_LEN: usize = 32;
/// Longest token verified; anything longer is refused before any decoding.
const MAX_TOKEN_LEN: usize = 2048;

type HmacSha256 = Hmac<Sha256>;

/// The shared signing key.
#[derive(Clone)]
pub(crate) struct TokenKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    /// The account the token was issued to.
    pub(crate) account_id: String,
    /// Issued at, Unix seconds.
    pub(crate) iat: u64,
    /// Expires at, Unix seconds: refused from this second on.
    pub(crate) exp: u64,
    /// Always [`ISSUER`].
    pub(crate) iss: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not a token of ours: malformed, wrong algorithm or bad signature.
    Invalid,
    /// Expired.
    Expired,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl TokenKey {
    /// A key of these bytes.
    ///
    /// # Errors
    /// A key shorter than 32 bytes.
    pub(crate) fn new(key: Vec<u8>) -> anyhow::Result<TokenKey> {
        anyhow::ensure!(key.len() >= KEY_LEN, "the token key must be at least {KEY_LEN} bytes");
        Ok(TokenKey { key })
    }

    /// A fresh random key (the bytes a new key document stores).
    pub(crate) fn random() -> TokenKey {
        let mut key = vec![0u8; KEY_LEN];
        rand::thread_rng().fill_bytes(&mut key);
        TokenKey { key }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("HMAC takes a key of any length")
    }

    /// A token for `account_id`, valid for `lifetime` from `now` (Unix seconds).
    pub(crate) fn sign_at(&self, account_id: &str, now: u64, lifetime: Duration) -> String {
        let claims = Claims {
            account_id: account_id.to_owned(),
            iat: now,
            exp: now.saturating_add(lifetime.as_secs()),
            iss: ISSUER.to_owned(),
        };
        let claims = serde_json::to_vec(&claims).expect("claims serialize");
        let signed =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(claims));
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signed}.{signature}")
    }

    /// A token for `account_id`, valid for `lifetime` from now.
    pub(crate) fn sign(&self, account_id: &str, lifetime: Duration) -> String {
        self.sign_at(account_id, now_secs(), lifetime)
    }

    /// The claims of a token this key signed, checked against the clock at `now`.
    ///
    /// # Errors
    /// [`Refused`].
    pub(crate) fn verify_at(&self, token: &str, now: u64) -> Result<Claims, Refused> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Refused::Invalid);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refused::Invalid);
        };
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| Refused::Invalid)?;
        let mut mac = self.mac();
        mac.update(&token.as_bytes()[..header.len() + 1 + claims.len()]);
        mac.verify_slice(&signature).map_err(|_| Refused::Invalid)?;
        // Signed by us: the header is ours, but check it anyway (one algorithm, never chosen by
        // the token).
        let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| Refused::Invalid)?;
        let header: Value = serde_json::from_slice(&header).map_err(|_| Refused::Invalid)?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(Refused::Invalid);
        }
        let claims = URL_SAFE_NO_PAD.decode(claims).map_err(|_| Refused::Invalid)?;
        let claims: Claims = serde_json::from_slice(&claims).map_err(|_| Refused::Invalid)?;
        if claims.iss != ISSUER {
            return Err(Refused::Invalid);
        }
        if now >= claims.exp {
            return Err(Refused::Expired);
        }
        Ok(claims)
    }

    /// [`TokenKey::verify_at`] now.
    ///
    /// # Errors
    /// [`Refused`].
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, Refused> {
        self.verify_at(token, now_secs())
    }

    /// Reads the shared key, creating database [`KEY_DB`] and the key document where missing.
    ///
    /// # Errors
    /// A storage failure, or a key document that does not hold a usable key (it is never
    /// overwritten: every instance must agree on it).
    pub(crate) async fn load_or_create(store: &SharedStore) -> anyhow::Result<TokenKey> {
        let db = DbName::new(KEY_DB).expect("a valid database name");
        store.ensure_db(&db).await?;
        for _ in 0..docstore::CAS_ATTEMPTS {
            if let Some(doc) = store.get(&db, KEY_DOC_ID).await? {
                return TokenKey::from_doc(&doc);
            }
            let fresh = TokenKey::random();
            let doc = json!({
                "_id": KEY_DOC_ID,
                "pvt_type": "switchboard_token_key",
                "algorithm": "HS256",
                "key": STANDARD.encode(&fresh.key),
                "pvt_created": now_secs(),
            });
            match store.put(&db, doc).await {
                Ok(_) => return Ok(fresh),
                // Another instance created it first: read theirs.
                Err(docstore::Error::Conflict { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        anyhow::bail!("cannot create or read {KEY_DB}/{KEY_DOC_ID}")
    }

    fn from_doc(doc: &Value) -> anyhow::Result<TokenKey> {
        let encoded = doc
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow::anyhow!("{KEY_DB}/{KEY_DOC_ID} has no \"key\" string"))?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|e| anyhow::anyhow!("{KEY_DB}/{KEY_DOC_ID}: \"key\" is not base64: {e}"))?;
        TokenKey::new(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_signed_token_verifies_with_the_same_key_only() {
        let key = TokenKey::new(vec![7; 32]).unwrap();
        let token = key.sign_at("acct", 1_000, DAY);
        let claims = key.verify_at(&token, 1_001).unwrap();
        assert_eq!(claims.account_id, "acct");
        assert_eq!(claims.exp, 1_000 + 86_400);
        let same = TokenKey::new(vec![7; 32]).unwrap();
        assert!(same.verify_at(&token, 1_001).is_ok());
        let other = TokenKey::new(vec![8; 32]).unwrap();
        assert_eq!(other.verify_at(&token, 1_001), Err(Refused::Invalid));
    }

    #[test]
    fn expiry_is_the_first_refused_second() {
        let key = TokenKey::new(vec![1; 32]).unwrap();
        let token = key.sign_at("acct", 1_000, Duration::from_secs(10));
        assert!(key.verify_at(&token, 1_009).is_ok());
        assert_eq!(key.verify_at(&token, 1_010), Err(Refused::Expired));
    }

    #[test]
    fn tampered_and_malformed_tokens_are_refused() {
        let key = TokenKey::new(vec![1; 32]).unwrap();
        let token = key.sign_at("acct", 1_000, DAY);
        let parts: Vec<&str> = token.split('.').collect();
        // Another account in the claims, the old signature.
        let forged_claims = URL_SAFE_NO_PAD
            .encode(r#"{"account_id":"admin","iat":1000,"exp":999999999999,"iss":"switchboard"}"#);
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert_eq!(key.verify_at(&forged, 1_001), Err(Refused::Invalid));
        // An unsigned token ("alg": "none").
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(key.verify_at(&format!("{none}.{}.", parts[1]), 1_001), Err(Refused::Invalid));
        for bad in ["", ".", "..", "a.b.c", "a.b.c.d", &"x".repeat(5000), &token[..token.len() - 2]]
        {
            assert_eq!(key.verify_at(bad, 1_001), Err(Refused::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(TokenKey::new(vec![1; 31]).is_err());
        let doc = json!({"key": STANDARD.encode([1u8; 8])});
        assert!(TokenKey::from_doc(&doc).is_err());
        assert!(TokenKey::from_doc(&json!({"key": 5})).is_err());
        assert!(TokenKey::from_doc(&json!({"key": STANDARD.encode([1u8; 32])})).is_ok());
    }
}
