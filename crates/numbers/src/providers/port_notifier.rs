//! `knm_port_notifier` (Kazoo's feature providers (`knm_prepend`, `knm_failover`, …)): a documented no-op.
//!
//! In Kazoo 4.3 its `save/1` reads `pvt_state` from the *public* document, where it never is, so
//! it never publishes anything; `delete/1` does nothing either. The `port` feature is therefore
//! only an allowed/denied name (`knm_providers:list_available_features/1`): requesting it on a number where it is denied is a 403, and
//! on a number where it is allowed nothing happens. Kept as a quirk (a Kazoo quirk kept for parity).

use crate::doc::NumberDoc;

/// `save/1`: nothing (see the module docs).
pub fn save(_doc: &mut NumberDoc) {}
