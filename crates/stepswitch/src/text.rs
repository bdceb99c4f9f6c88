//! The plain-text route answer: one full SIP URI per line, in failover order, ready for a SIP
//! proxy's request URI. Written straight from the endpoints (no JSON in between), each line
//! from its gateway's fragments prepared when the table was compiled.

use crate::RouteAnswer;

/// Appends one line per endpoint of `answer` to `out` (`sip:…\n`) and returns how many it
/// wrote.
///
/// A gateway's dial string (`stepswitch_resources:gateway_dialstring/2`) is already a `sip:` URI unless the gateway has a verbatim
/// `route`. A verbatim route with a URI scheme (`sip:`, `sips:`) is written as it is; a bare
/// `user@host` or `host` gets `sip:` in front; a route that is a FreeSWITCH dial string (it
/// contains `/`, as `sofia/…` or `loopback/…` do) names nothing a SIP proxy can dial and is
/// left out.
pub fn write_sip_uris(answer: &RouteAnswer, out: &mut String) -> usize {
    answer.endpoints.iter().filter(|endpoint| endpoint.write_sip_uri(out)).count()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::endpoint::tests::tables_of;
    use crate::{route, RouteRequest, Scope};

    #[test]
    fn one_full_sip_uri_per_line_in_failover_order() {
        let docs = [
            json!({"_id": "a", "pvt_type": "resource", "weight_cost": 5, "rules": ["^\\+1(\\d{10})$"],
                   "gateways": [{"server": "a.example.com", "port": 5080, "prefix": "9"}]}),
            json!({"_id": "b", "pvt_type": "resource", "weight_cost": 1, "rules": ["^\\+1(\\d{10})$"],
                   "gateways": [{"server": "b.example.com", "route": "user@b2.example.com"},
                                {"server": "c", "route": "sips:x@c.example.com"},
                                {"server": "d", "route": "loopback/4155550100"},
                                {"server": "e.example.com"}]}),
        ];
        let tables = tables_of(Scope::Global, &docs, &[]);
        let answer = route(&tables, &RouteRequest::new("+14155550100"));
        let mut out = String::new();
        assert_eq!(write_sip_uris(&answer, &mut out), 4);
        assert_eq!(
            out,
            "sip:user@b2.example.com\nsips:x@c.example.com\nsip:4155550100@e.example.com\n\
             sip:94155550100@a.example.com:5080\n"
        );
        // The JSON keeps Kazoo's verbatim route.
        assert_eq!(answer.endpoints[0].to_json()["Route"], "user@b2.example.com");
        let answer = route(&tables, &RouteRequest::new("+4420"));
        assert_eq!(write_sip_uris(&answer, &mut String::new()), 0);
    }
}
