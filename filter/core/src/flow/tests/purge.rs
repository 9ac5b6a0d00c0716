//! Purge rules pushed in a new configuration: entries of the purged scope stored before are
//! misses (one upstream call, then served again), everything else stays a hit.
use super::*;
use crate::key::TenantIdentity;

/// One request from `client` (anonymous clients are scoped by address); whether it went
/// upstream.
fn ask(envoy: &Envoy, w: &Worker, stream: u32, client: &str, prompt: &str) -> bool {
    let mut host = envoy.host();
    host.client = client.into();
    let mut req = Request::new(stream);
    let action = send(w, &mut host, &mut req, &chat(prompt), &[]);
    if action == Action::Continue {
        answer(w, &mut host, &mut req, 200, &completion("hello"));
        return true;
    }
    req.on_response_headers(w, &mut host, false);
    req.on_stream_end(w, &mut host);
    false
}

fn scope_of(client: &str) -> String {
    TenantIdentity::Client(client.into()).scope().key_part()
}

const X: &str = "10.0.0.1";
const Y: &str = "10.0.0.2";

#[test]
fn a_tenant_purge_misses_that_tenants_entries_once_and_keeps_the_others() {
    let mut envoy = Envoy::new();
    let before = envoy.worker(json!({}));
    assert!(ask(&envoy, &before, 1, X, "x's prompt") && ask(&envoy, &before, 2, Y, "y's prompt"));
    assert!(!ask(&envoy, &before, 3, X, "x's prompt") && !ask(&envoy, &before, 4, Y, "y's prompt"), "both held");

    envoy.now += 1_000;
    let rule = json!({ "cache": { "purges": [{ "id": 1, "tenant": scope_of(X) }] } });
    let after = envoy.worker(rule.clone());
    // (An answer stored in the very millisecond the rule was applied counts as before it.)
    envoy.now += 1;
    assert!(ask(&envoy, &after, 5, X, "x's prompt"), "X's entry is purged: upstream");
    assert!(!ask(&envoy, &after, 6, Y, "y's prompt"), "Y's entry stays a hit");

    assert!(!ask(&envoy, &after, 7, X, "x's prompt"), "the fresh answer is served again");
    assert_eq!(flushed(&envoy, &after).stat("aurelis_l1_purged_total"), 1);

    // Another worker (or a later configuration) with the same rule keeps the first moment:
    // X's fresh entry is not purged again.
    envoy.now += 1_000;
    let other = envoy.worker(rule);
    assert!(!ask(&envoy, &other, 8, X, "x's prompt"));
    // A configuration without the rule (a control plane restarted without it) cannot bring
    // an entry stored before it back: the process-wide table remembers.
    let forgotten = envoy.worker(json!({}));
    assert!(!ask(&envoy, &forgotten, 9, Y, "y's prompt"));
}

#[test]
fn a_model_purge_covers_every_tenant_of_that_model() {
    let mut envoy = Envoy::new();
    let before = envoy.worker(json!({}));
    assert!(ask(&envoy, &before, 1, X, "p") && ask(&envoy, &before, 2, Y, "p"));
    envoy.now += 1;
    let after = envoy.worker(json!({ "cache": { "purges": [{ "id": 9, "model": "gpt-4o-mini" }] } }));
    envoy.now += 1;
    assert!(ask(&envoy, &after, 3, X, "p") && ask(&envoy, &after, 4, Y, "p"));
    let other_model = envoy.worker(json!({ "cache": { "purges": [{ "id": 10, "model": "gpt-4o" }] } }));
    assert!(!ask(&envoy, &other_model, 5, X, "p"), "another model's purge leaves it");
}
