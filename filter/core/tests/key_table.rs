//! Table of request pairs that must, or must not, share a cache key. Each row says why.
use aurelis_core::config::{NormalizationConfig, TenantConfig};
use aurelis_core::key::{cache_key, canonicalize, TenantIdentity, TenantScope};

/// Which `NormalizationConfig` a row runs under.
#[derive(Clone, Copy, Debug)]
enum Rules {
    Default,
    Lowercase,
    Whitespace,
    Semantic,
    All,
}

fn rules(r: Rules) -> NormalizationConfig {
    let d = NormalizationConfig::default();
    match r {
        Rules::Default => d,
        Rules::Lowercase => NormalizationConfig { case_sensitive: false, ..d },
        Rules::Whitespace => NormalizationConfig { whitespace_normalize: true, ..d },
        Rules::Semantic => NormalizationConfig { semantic_equivalence: true, ..d },
        Rules::All => {
            NormalizationConfig { case_sensitive: false, whitespace_normalize: true, semantic_equivalence: true, ..d }
        }
    }
}

fn key(body: &str, r: Rules) -> String {
    let canonical = canonicalize(body.as_bytes(), &rules(r)).unwrap_or_else(|e| panic!("{e}: {body}"));
    cache_key("model_request:", &TenantScope::Anonymous, &canonical)
}

const M: &str = r#""model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]"#;

fn with(extra: &str) -> String {
    if extra.is_empty() {
        format!("{{{M}}}")
    } else {
        format!("{{{M},{extra}}}")
    }
}

/// (rules, why, a, b): a and b must share a key.
fn same_rows() -> Vec<(Rules, &'static str, String, String)> {
    use Rules::*;
    let chat = |extra: &str| with(extra);
    vec![
        (
            Default,
            "object key order is insignificant",
            r#"{"model":"m","temperature":0,"messages":[]}"#.into(),
            r#"{"messages":[],"temperature":0,"model":"m"}"#.into(),
        ),
        (
            Default,
            "whitespace between JSON tokens is insignificant",
            r#"{"model":"m","seed":1}"#.into(),
            "{ \"model\" :\n\t\"m\" , \"seed\" : 1 }\r\n".into(),
        ),
        (
            Default,
            "nested key order is insignificant",
            chat(r#""response_format":{"type":"json_object","x":{"a":1,"b":2}}"#),
            chat(r#""response_format":{"x":{"b":2,"a":1},"type":"json_object"}"#),
        ),
        (Default, "1.0 and 1 are the same number", chat(r#""top_k":1.0"#), chat(r#""top_k":1"#)),
        (Default, "1e0 and 1 are the same number", chat(r#""top_k":1e0"#), chat(r#""top_k":1"#)),
        (Default, "10e-1 and 1 are the same number", chat(r#""top_k":10e-1"#), chat(r#""top_k":1"#)),
        (Default, "0.5 and 5e-1 are the same number", chat(r#""temperature":0.5"#), chat(r#""temperature":5e-1"#)),
        (Default, "0 and 0.0 are the same temperature", chat(r#""temperature":0"#), chat(r#""temperature":0.0"#)),
        (Default, "-0.0 equals 0", chat(r#""temperature":-0.0"#), chat(r#""temperature":0"#)),
        (Default, "max_tokens 256.0 is 256", chat(r#""max_tokens":256.0"#), chat(r#""max_tokens":256"#)),
        (
            Default,
            "a string escape and the raw character are the same string",
            r#"{"model":"m","messages":[{"role":"user","content":"\u0041\u00e9"}]}"#.into(),
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"A\u{e9}\"}]}".into(),
        ),
        (Default, "an escaped solidus is a solidus", chat(r#""stop":["\/"]"#), chat(r#""stop":["/"]"#)),
        (Default, "temperature 1 is the documented default", chat(r#""seed":3,"temperature":1"#), chat(r#""seed":3"#)),
        (Default, "top_p 1 is the documented default", chat(r#""top_p":1.0"#), chat("")),
        (Default, "n 1 is the documented default", chat(r#""n":1"#), chat("")),
        (Default, "presence_penalty 0 is the documented default", chat(r#""presence_penalty":0"#), chat("")),
        (Default, "frequency_penalty 0.0 is the documented default", chat(r#""frequency_penalty":0.0"#), chat("")),
        (Default, "logprobs false is the documented default", chat(r#""logprobs":false"#), chat("")),
        (
            Default,
            "parallel_tool_calls true is the documented default",
            chat(r#""parallel_tool_calls":true"#),
            chat(""),
        ),
        (Default, "an empty stop list stops nothing", chat(r#""stop":[]"#), chat("")),
        (Default, "stop null is absent", chat(r#""stop":null"#), chat("")),
        (Default, "seed null is absent", chat(r#""seed":null"#), chat("")),
        (Default, "any null optional field is absent", chat(r#""tools":null,"max_tokens":null"#), chat("")),
        (Default, "stream is served from the same entry as JSON or SSE", chat(r#""stream":true"#), chat("")),
        (Default, "stream false is the default", chat(r#""stream":false"#), chat(r#""stream":true"#)),
        (
            Default,
            "stream_options only shapes the SSE framing",
            chat(r#""stream":true,"stream_options":{"include_usage":true}"#),
            chat(""),
        ),
        (Default, "user is an abuse-monitoring id", chat(r#""user":"alice""#), chat(r#""user":"bob""#)),
        (Default, "metadata is a dashboard tag", chat(r#""metadata":{"run":"1"}"#), chat("")),
        (
            Default,
            "store keeps a copy, it does not change the answer",
            chat(r#""store":true"#),
            chat(r#""store":false"#),
        ),
        (Default, "service_tier is a price/latency class", chat(r#""service_tier":"flex""#), chat("")),
        (
            Default,
            "prompt_cache_key is the provider's own cache hint",
            chat(r#""prompt_cache_key":"k1""#),
            chat(r#""prompt_cache_key":"k2""#),
        ),
        (Default, "safety_identifier is an abuse-monitoring id", chat(r#""safety_identifier":"u1""#), chat("")),
        (
            Default,
            "a large seed stays exact and equal to itself",
            chat(r#""seed":18446744073709551615"#),
            chat(r#""seed": 18446744073709551615 "#),
        ),
        (Default, "a duplicate key: the last one wins, as upstream", chat(r#""seed":1,"seed":2"#), chat(r#""seed":2"#)),
        (
            Lowercase,
            "case_sensitive false folds case in message text",
            r#"{"model":"m","messages":[{"role":"user","content":"Hello World"}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","content":"hello world"}]}"#.into(),
        ),
        (
            Lowercase,
            "case folding covers text content parts",
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"ABC"}]}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"abc"}]}]}"#.into(),
        ),
        (
            Lowercase,
            "case folding covers a legacy prompt",
            r#"{"model":"m","prompt":"Say HI"}"#.into(),
            r#"{"model":"m","prompt":"say hi"}"#.into(),
        ),
        (
            Lowercase,
            "case folding covers embeddings input arrays",
            r#"{"model":"e","input":["A","B"]}"#.into(),
            r#"{"model":"e","input":["a","b"]}"#.into(),
        ),
        (
            Whitespace,
            "whitespace_normalize collapses runs and trims",
            r#"{"model":"m","messages":[{"role":"user","content":"  hi \n\t there "}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","content":"hi there"}]}"#.into(),
        ),
        (
            Whitespace,
            "whitespace_normalize covers prompt",
            r#"{"model":"m","prompt":"a  b"}"#.into(),
            r#"{"model":"m","prompt":"a b"}"#.into(),
        ),
        (
            Semantic,
            "semantic_equivalence folds curly quotes",
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"it\u{2019}s \u{201C}ok\u{201D}\"}]}"
                .into(),
            r#"{"model":"m","messages":[{"role":"user","content":"it's \"ok\""}]}"#.into(),
        ),
        (
            Semantic,
            "semantic_equivalence collapses trailing ??? and trims",
            r#"{"model":"m","messages":[{"role":"user","content":" why??? "}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","content":"why?"}]}"#.into(),
        ),
        (
            Semantic,
            "semantic_equivalence removes zero-width characters",
            "{\"model\":\"m\",\"prompt\":\"a\u{200B}b\u{FEFF}\"}".into(),
            r#"{"model":"m","prompt":"ab"}"#.into(),
        ),
        (
            All,
            "all rules together",
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"  What\u{2019}S   UP!!! \"}]}".into(),
            r#"{"model":"m","messages":[{"role":"user","content":"what's up!"}]}"#.into(),
        ),
        (
            All,
            "all rules together still ignore JSON member order",
            r#"{"model":"m","tools":[{"type":"function","function":{"name":"f","parameters":{"a":1,"b":2}}}]}"#.into(),
            r#"{"tools":[{"function":{"parameters":{"b":2,"a":1},"name":"f"},"type":"function"}],"model":"m"}"#.into(),
        ),
    ]
}

/// (rules, why, a, b): a and b must have different keys.
fn different_rows() -> Vec<(Rules, &'static str, String, String)> {
    use Rules::*;
    let msg = |content: &str| format!(r#"{{"model":"m","messages":[{{"role":"user","content":{content}}}]}}"#);
    let chat = |extra: &str| with(extra);
    vec![
        (Default, "prompt whitespace matters by default (code, poetry)", msg(r#""a  b""#), msg(r#""a b""#)),
        (Default, "leading/trailing prompt whitespace matters by default", msg(r#"" hi""#), msg(r#""hi""#)),
        (Default, "a trailing newline matters by default", msg(r#""hi\n""#), msg(r#""hi""#)),
        (Default, "prompt case matters by default", msg(r#""Hello""#), msg(r#""hello""#)),
        (Default, "curly and straight quotes differ by default", msg("\"it\u{2019}s\""), msg(r#""it's""#)),
        (Default, "trailing punctuation matters by default", msg(r#""why??""#), msg(r#""why?""#)),
        (Default, "zero-width characters matter by default", msg("\"a\u{200B}b\""), msg(r#""ab""#)),
        (Default, "different prompt", msg(r#""2+2?""#), msg(r#""2+3?""#)),
        (
            Default,
            "different model",
            r#"{"model":"gpt-4o","seed":1}"#.into(),
            r#"{"model":"gpt-4o-mini","seed":1}"#.into(),
        ),
        (Default, "model names are case-sensitive", r#"{"model":"GPT-4o"}"#.into(), r#"{"model":"gpt-4o"}"#.into()),
        (Default, "temperature 0 vs 0.5", chat(r#""temperature":0"#), chat(r#""temperature":0.5"#)),
        (Default, "temperature 0 vs absent (absent means 1)", chat(r#""temperature":0"#), chat("")),
        (Default, "temperature 0.7 vs 0.70001", chat(r#""temperature":0.7"#), chat(r#""temperature":0.70001"#)),
        (Default, "different seed", chat(r#""seed":1"#), chat(r#""seed":2"#)),
        (Default, "seed vs no seed", chat(r#""seed":1"#), chat("")),
        (
            Default,
            "large seeds differing in the last digit stay distinct",
            chat(r#""seed":9007199254740993"#),
            chat(r#""seed":9007199254740992"#),
        ),
        (Default, "seed as a string is not seed as a number", chat(r#""seed":"1""#), chat(r#""seed":1"#)),
        (Default, "max_tokens changes where the answer is cut", chat(r#""max_tokens":10"#), chat(r#""max_tokens":20"#)),
        (Default, "max_tokens vs none", chat(r#""max_tokens":10"#), chat("")),
        (Default, "max_completion_tokens changes the answer", chat(r#""max_completion_tokens":10"#), chat("")),
        (
            Default,
            "max_tokens and max_completion_tokens are different parameters",
            chat(r#""max_tokens":10"#),
            chat(r#""max_completion_tokens":10"#),
        ),
        (
            Default,
            "message order matters",
            r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","content":"b"},{"role":"user","content":"a"}]}"#.into(),
        ),
        (
            Default,
            "role matters",
            r#"{"model":"m","messages":[{"role":"system","content":"a"}]}"#.into(),
            r#"{"model":"m","messages":[{"role":"user","content":"a"}]}"#.into(),
        ),
        (
            Default,
            "an extra message matters",
            msg(r#""a""#),
            r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"a"}]}"#.into(),
        ),
        (
            Default,
            "string content vs a content-part array are different inputs",
            msg(r#""a""#),
            msg(r#"[{"type":"text","text":"a"}]"#),
        ),
        (Default, "tools vs no tools", chat(r#""tools":[{"type":"function","function":{"name":"f"}}]"#), chat("")),
        (
            Default,
            "different tool name",
            chat(r#""tools":[{"type":"function","function":{"name":"f"}}]"#),
            chat(r#""tools":[{"type":"function","function":{"name":"g"}}]"#),
        ),
        (
            Default,
            "tool order is rendered into the prompt",
            chat(r#""tools":[{"function":{"name":"f"}},{"function":{"name":"g"}}]"#),
            chat(r#""tools":[{"function":{"name":"g"}},{"function":{"name":"f"}}]"#),
        ),
        (
            Default,
            "tool_choice changes which tool is called",
            chat(r#""tool_choice":"auto""#),
            chat(r#""tool_choice":"required""#),
        ),
        (Default, "parallel_tool_calls false is not the default", chat(r#""parallel_tool_calls":false"#), chat("")),
        (Default, "response_format changes the output", chat(r#""response_format":{"type":"json_object"}"#), chat("")),
        (Default, "stop sequences cut the answer", chat(r#""stop":["\n"]"#), chat("")),
        (Default, "stop string vs stop list of another string", chat(r#""stop":"a""#), chat(r#""stop":"b""#)),
        (Default, "n 2 returns two choices", chat(r#""n":2"#), chat("")),
        (Default, "top_p 0.9 is not the default", chat(r#""top_p":0.9"#), chat("")),
        (Default, "presence_penalty 0.5 is not the default", chat(r#""presence_penalty":0.5"#), chat("")),
        (Default, "logprobs true adds logprobs to the answer", chat(r#""logprobs":true"#), chat("")),
        (
            Default,
            "legacy integer logprobs 0 is a request, not the boolean default",
            r#"{"model":"m","prompt":"a","logprobs":0}"#.into(),
            r#"{"model":"m","prompt":"a"}"#.into(),
        ),
        (Default, "logit_bias changes token choice", chat(r#""logit_bias":{"50256":-100}"#), chat("")),
        (Default, "unknown vendor extensions may change the answer", chat(r#""top_k":40"#), chat("")),
        (
            Default,
            "reasoning_effort changes the answer",
            chat(r#""reasoning_effort":"low""#),
            chat(r#""reasoning_effort":"high""#),
        ),
        (
            Default,
            "a null inside a message is kept (only top-level null is absent)",
            r#"{"model":"m","messages":[{"role":"user","content":"a","name":null}]}"#.into(),
            msg(r#""a""#),
        ),
        (Default, "an empty string is not null", chat(r#""suffix":"""#), chat("")),
        (
            Default,
            "embeddings input differs",
            r#"{"model":"e","input":"a"}"#.into(),
            r#"{"model":"e","input":"b"}"#.into(),
        ),
        (
            Default,
            "token-array prompt differs",
            r#"{"model":"m","prompt":[1,2]}"#.into(),
            r#"{"model":"m","prompt":[2,1]}"#.into(),
        ),
        (
            Lowercase,
            "lowercasing never touches non-text fields",
            chat(r#""tool_choice":{"type":"function","function":{"name":"F"}}"#),
            chat(r#""tool_choice":{"type":"function","function":{"name":"f"}}"#),
        ),
        (Whitespace, "whitespace_normalize keeps words apart", msg(r#""a b""#), msg(r#""ab""#)),
        (Semantic, "semantic_equivalence keeps an ellipsis", msg(r#""wait...""#), msg(r#""wait.""#)),
        (Semantic, "semantic_equivalence keeps ? and ! distinct", msg(r#""really?""#), msg(r#""really!""#)),
        (All, "all rules still keep different words apart", msg(r#""Hello there""#), msg(r#""Hello where""#)),
    ]
}

#[test]
fn pairs_that_must_share_a_key() {
    let rows = same_rows();
    assert!(rows.len() >= 40, "{} rows", rows.len());
    for (r, why, a, b) in rows {
        assert_eq!(key(&a, r), key(&b, r), "{why} ({r:?})\n  a = {a}\n  b = {b}");
    }
}

#[test]
fn pairs_that_must_not_share_a_key() {
    let rows = different_rows();
    assert!(rows.len() >= 40, "{} rows", rows.len());
    for (r, why, a, b) in rows {
        assert_ne!(key(&a, r), key(&b, r), "{why} ({r:?})\n  a = {a}\n  b = {b}");
    }
}

fn tenant_key(config: &TenantConfig, identity: &TenantIdentity) -> String {
    let canonical = canonicalize(with(r#""seed":1"#).as_bytes(), &NormalizationConfig::default()).unwrap();
    cache_key("model_request:", &identity.clone().under(config).scope(), &canonical)
}

#[test]
fn tenants_are_isolated() {
    use TenantIdentity::{Anonymous, Client, Tenant};
    let isolated = TenantConfig::default();
    let shared = TenantConfig { header: None, shared_scope: true };
    let t = |s: &str| Tenant(s.to_string());
    let c = |s: &str| Client(s.to_string());
    // (why, config, identity a, identity b, same?)
    let rows: [(&str, &TenantConfig, TenantIdentity, TenantIdentity, bool); 7] = [
        ("different tenants never share", &isolated, t("acme"), t("initech"), false),
        ("one tenant shares with itself", &isolated, t("acme"), t("acme"), true),
        ("anonymous clients are scoped per address", &isolated, c("10.0.0.1"), c("10.0.0.2"), false),
        ("a tenant named like an address is not that client", &isolated, t("10.0.0.1"), c("10.0.0.1"), false),
        ("a tenant is never the shared anonymous scope", &isolated, t("acme"), Anonymous, false),
        ("shared scope merges tenants", &shared, t("acme"), t("initech"), true),
        ("shared scope merges tenants and anonymous", &shared, t("acme"), c("10.0.0.1"), true),
    ];
    for (why, config, a, b, same) in rows {
        assert_eq!(tenant_key(config, &a) == tenant_key(config, &b), same, "{why}");
    }
}
