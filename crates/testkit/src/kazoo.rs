//! Kazoo documents written straight into the test server (the "Fauxton" side of end-to-end
//! tests): database name encoding, account databases, blocking JSON requests and accounts.

use serde_json::{json, Value};

/// A database name or document id as it goes in a CouchDB URL (`/` and `+` encoded).
pub fn enc(db: &str) -> String {
    db.replace('/', "%2F").replace('+', "%2B")
}

/// The account database of a 32-character account id (`account/xx/yy/rest`).
pub fn account_db(id: &str) -> String {
    format!("account/{}/{}/{}", &id[..2], &id[2..4], &id[4..])
}

/// A blocking JSON request to the test server: the status and the body (`null` when the body
/// is not JSON).
///
/// # Panics
/// When the server cannot be reached.
pub fn couch(method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    let text = body.map(|b| b.to_string());
    let (status, body) = crate::http_request(method, url, text.as_deref()).expect("couch request");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Writes `doc` (with its `_id`) into `db`, creating the database if needed; returns the rev.
///
/// # Panics
/// When the write is refused.
pub fn couch_put_doc(couch_url: &str, db: &str, doc: &Value) -> String {
    let _ = couch("PUT", &format!("{couch_url}/{}", enc(db)), None);
    let id = doc["_id"].as_str().expect("the document has an _id");
    let (status, body) = couch("PUT", &format!("{couch_url}/{}/{}", enc(db), enc(id)), Some(doc));
    assert!(status == 201 || status == 202, "PUT {db}/{id}: {status} {body}");
    body["rev"].as_str().expect("a rev").to_owned()
}

/// Writes an enabled account (`pvt_api_key` `key`, ancestors `tree`) into `accounts` and
/// creates its account database.
///
/// # Panics
/// When a write is refused.
pub fn make_account(couch_url: &str, id: &str, key: &str, tree: &[&str], superduper: bool) {
    let doc = json!({
        "_id": id, "name": format!("test {id}"), "pvt_type": "account", "pvt_api_key": key,
        "pvt_tree": tree, "pvt_superduper_admin": superduper, "pvt_enabled": true,
        "pvt_account_id": id, "pvt_account_db": enc(&account_db(id)),
    });
    couch_put_doc(couch_url, "accounts", &doc);
    let _ = couch("PUT", &format!("{couch_url}/{}", enc(&account_db(id))), None);
}
