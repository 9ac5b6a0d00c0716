//! The CEL match the upstream credential filters are gated by, and the two xDS matcher messages
//! `envoy-types` does not ship (declared in `control-plane/proto/`, same names and field
//! numbers as cncf/xds). Envoy 1.40 refuses `cel_expr_string` ("CEL expression not set"), so
//! the expression is written as its parsed syntax tree.
use envoy_types::pb::cel::expr::{constant::ConstantKind, expr, Constant, Expr, ParsedExpr};
use envoy_types::pb::xds::r#type::v3::CelExpression;

/// `xds.type.matcher.v3.CelMatcher`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CelMatcher {
    #[prost(message, optional, tag = "1")]
    pub expr_match: Option<CelExpression>,
    #[prost(string, tag = "2")]
    pub description: String,
}

impl prost::Name for CelMatcher {
    const NAME: &'static str = "CelMatcher";
    const PACKAGE: &'static str = "xds.type.matcher.v3";
    fn full_name() -> String {
        "xds.type.matcher.v3.CelMatcher".into()
    }
    fn type_url() -> String {
        "type.googleapis.com/xds.type.matcher.v3.CelMatcher".into()
    }
}

/// `xds.type.matcher.v3.HttpAttributesCelMatchInput`: CEL over the stream's attributes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpAttributesCelMatchInput {}

impl prost::Name for HttpAttributesCelMatchInput {
    const NAME: &'static str = "HttpAttributesCelMatchInput";
    const PACKAGE: &'static str = "xds.type.matcher.v3";
    fn full_name() -> String {
        "xds.type.matcher.v3.HttpAttributesCelMatchInput".into()
    }
    fn type_url() -> String {
        "type.googleapis.com/xds.type.matcher.v3.HttpAttributesCelMatchInput".into()
    }
}

fn node(kind: expr::ExprKind) -> Expr {
    Expr { id: 0, expr_kind: Some(kind) }
}

fn string(value: &str) -> Expr {
    node(expr::ExprKind::ConstExpr(Constant { constant_kind: Some(ConstantKind::StringValue(value.into())) }))
}

fn call(function: &str, args: Vec<Expr>) -> Expr {
    node(expr::ExprKind::CallExpr(Box::new(expr::Call { target: None, function: function.into(), args })))
}

fn select(operand: Expr, field: &str) -> Expr {
    node(expr::ExprKind::SelectExpr(Box::new(expr::Select {
        operand: Some(Box::new(operand)),
        field: field.into(),
        test_only: false,
    })))
}

/// `xds.upstream_host_metadata.filter_metadata[namespace][key] == value`: true when the host
/// chosen for this attempt carries that endpoint metadata.
pub fn upstream_host_metadata_is(namespace: &str, key: &str, value: &str) -> CelMatcher {
    let ident = node(expr::ExprKind::IdentExpr(expr::Ident { name: "xds".into() }));
    let filter_metadata = select(select(ident, "upstream_host_metadata"), "filter_metadata");
    let field = call("_[_]", vec![call("_[_]", vec![filter_metadata, string(namespace)]), string(key)]);
    CelMatcher {
        expr_match: Some(CelExpression {
            cel_expr_parsed: Some(ParsedExpr {
                expr: Some(call("_==_", vec![field, string(value)])),
                source_info: None,
            }),
            ..Default::default()
        }),
        description: format!("upstream host's {namespace}.{key} is {value}"),
    }
}
