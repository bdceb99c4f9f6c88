use super::*;

#[test]
fn names_and_ids_are_encoded_for_the_path() {
    let db = DbName::new("numbers/+1415").unwrap();
    assert_eq!(encode_db(&db), "numbers%2F%2B1415");
    // Unreserved characters stay readable in the URL (and in error messages that show it).
    let config = DbName::new("system_config").unwrap();
    assert_eq!(encode_db(&config), "system_config");
    assert_eq!(encode_doc_id("sp ace/slash+plus?q#h%"), "sp%20ace%2Fslash%2Bplus%3Fq%23h%25");
    assert_eq!(encode_doc_id("_design/routes x"), "_design/routes%20x");
    assert_eq!(encode_doc_id("_local/switchboard-follow-a"), "_local/switchboard-follow-a");
    assert_eq!(encode_doc_id("+14155550100"), "%2B14155550100");
}

#[test]
fn credentials_come_out_of_the_url() {
    let cfg = CouchConfig::from_url("http://ad%40min:p%3Ass@127.0.0.1:5984/prefix/").unwrap();
    assert_eq!(cfg.user.as_deref(), Some("ad@min"));
    assert_eq!(cfg.password.as_deref(), Some("p:ss"));
    assert_eq!(cfg.url, "http://127.0.0.1:5984/prefix/");
    assert!(!format!("{cfg:?}").contains("p:ss"));
    let plain = CouchConfig::from_url("http://127.0.0.1:5984").unwrap();
    assert_eq!(plain.user, None);
    assert!(CouchConfig::from_url("ftp://x").is_err());
    assert!(CouchConfig::from_url("not a url").is_err());
    let store = CouchStore::new(cfg).unwrap();
    let db = DbName::new("a/b").unwrap();
    assert_eq!(store.doc_path(&db, "x y"), "/prefix/a%2Fb/x%20y");
}

#[test]
fn statuses_map_to_typed_errors_with_reasons() {
    let db = DbName::new("offnet").unwrap();
    let e =
        map_status(404, "not_found".into(), "Database does not exist.".into(), Ctx::Doc(&db, "x"));
    assert!(matches!(e, Error::DbNotFound { .. }), "{e}");
    let e = map_status(404, "not_found".into(), "missing".into(), Ctx::Doc(&db, "x"));
    assert!(matches!(e, Error::DocNotFound { ref id, .. } if id == "x"), "{e}");
    let e =
        map_status(409, "conflict".into(), "Document update conflict.".into(), Ctx::Doc(&db, "x"));
    assert!(matches!(e, Error::Conflict { .. }), "{e}");
    let e = map_status(
        412,
        "file_exists".into(),
        "The database could not be created.".into(),
        Ctx::Db(&db),
    );
    assert!(matches!(e, Error::DbExists { .. }), "{e}");
    let e = map_status(
        401,
        "unauthorized".into(),
        "Name or password is incorrect.".into(),
        Ctx::Server,
    );
    assert_eq!(e.to_string(), "unauthorized: Name or password is incorrect.");
    let e = map_status(503, "service_unavailable".into(), "down".into(), Ctx::Db(&db));
    assert!(e.is_transient());
    assert!(e.to_string().contains("down"));
}

#[test]
fn feed_lines_parse_into_events() {
    let db = DbName::new("offnet").unwrap();
    assert_eq!(parse_feed_line(b"", &db, None).unwrap(), [FeedEvent::Heartbeat]);
    let row = br#"{"seq":"3-g1A","id":"r1","changes":[{"rev":"2-ab"}],"deleted":true,"doc":{"_id":"r1"}}"#;
    match parse_feed_line(row, &db, None).unwrap().remove(0) {
        FeedEvent::Change(c) => {
            assert_eq!(c.seq, Seq::from_json(json!("3-g1A")));
            assert_eq!(c.rev.as_str(), "2-ab");
            assert!(c.deleted);
            assert!(c.doc.is_some());
        }
        other => panic!("not a change: {other:?}"),
    }
    assert_eq!(
        parse_feed_line(br#"{"last_seq":7,"pending":0}"#, &db, None).unwrap(),
        [FeedEvent::End { last_seq: Seq::from_json(json!(7)) }]
    );
    assert!(parse_feed_line(br#"{"error":"unauthorized","reason":"no"}"#, &db, None).is_err());
    let skipped = parse_feed_line(b"{not json", &db, None).unwrap();
    assert!(matches!(skipped[..], [FeedEvent::Issue(_)]), "{skipped:?}");
}
