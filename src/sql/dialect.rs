//! [`StreamingDialect`]: the SQL dialect pipelines are parsed in. It is DataFusion's
//! generic dialect plus table versions, so that a temporal join can name the version of a
//! table it reads: `JOIN users FOR SYSTEM_TIME AS OF e.ts`. [`sql_frame`] plans a
//! statement in it; every statement of a pipeline, view or REPL session goes through it.

use std::any::TypeId;

use datafusion::common::Result;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::sqlparser::dialect::{Dialect, GenericDialect};

/// DataFusion's generic dialect, accepting `FOR SYSTEM_TIME AS OF` after a table name.
#[derive(Debug, Default)]
pub struct StreamingDialect;

/// Answers each question the generic dialect answers for itself as it does.
macro_rules! as_generic {
    ($($name:ident),* $(,)?) => {
        $(fn $name(&self) -> bool {
            GenericDialect.$name()
        })*
    };
}

impl Dialect for StreamingDialect {
    /// The parser's checks for "the generic dialect" hold for this one.
    fn dialect(&self) -> TypeId {
        TypeId::of::<GenericDialect>()
    }

    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        GenericDialect.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        GenericDialect.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        GenericDialect.is_identifier_part(ch)
    }

    as_generic!(
        supports_unicode_string_literal,
        supports_partition_by_after_order_by,
        supports_array_join_syntax,
        supports_group_by_expr,
        supports_group_by_with_modifier,
        supports_left_associative_joins_without_parens,
        supports_connect_by,
        supports_match_recognize,
        supports_pipe_operator,
        supports_start_transaction_modifier,
        supports_window_function_null_treatment_arg,
        supports_dictionary_syntax,
        supports_window_clause_named_window_reference,
        supports_parenthesized_set_variables,
        supports_select_wildcard_except,
        support_map_literal_syntax,
        allow_extract_custom,
        allow_extract_single_quotes,
        supports_extract_comma_syntax,
        supports_create_view_comment_syntax,
        supports_parens_around_table_factor,
        supports_values_as_table_factor,
        supports_create_index_with_clause,
        supports_explain_with_utility_options,
        supports_limit_comma,
        supports_update_order_by,
        supports_from_first_select,
        supports_projection_trailing_commas,
        supports_asc_desc_in_column_definition,
        supports_try_convert,
        supports_bitwise_shift_operators,
        supports_comment_on,
        supports_load_extension,
        supports_named_fn_args_with_assignment_operator,
        supports_struct_literal,
        supports_empty_projections,
        supports_nested_comments,
        supports_multiline_comment_hints,
        supports_user_host_grantee,
        supports_string_escape_constant,
        supports_array_typedef_with_brackets,
        supports_match_against,
        supports_set_names,
        supports_comma_separated_set_assignments,
        supports_filter_during_aggregation,
        supports_select_wildcard_exclude,
        supports_data_type_signed_suffix,
        supports_interval_options,
        supports_quote_delimited_string,
        supports_select_wildcard_replace,
        supports_select_wildcard_ilike,
        supports_select_wildcard_rename,
        supports_optimize_table,
        supports_install,
        supports_detach,
        supports_prewhere,
        supports_with_fill,
        supports_limit_by,
        supports_interpolate,
        supports_settings,
        supports_select_format,
        supports_comment_optimizer_hint,
        supports_constraint_keyword_without_name,
        supports_key_column_option,
        supports_comma_separated_trim,
        supports_cte_without_as,
        supports_select_item_multi_column_alias,
        supports_xml_expressions
    );
}

/// Plans one SQL statement in [`StreamingDialect`], as `context.sql` would in its own.
pub async fn sql_frame(context: &SessionContext, sql: &str) -> Result<DataFrame> {
    let state = context.state();
    let limit = state.config_options().sql_parser.recursion_limit.get();
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&StreamingDialect)
        .with_recursion_limit(limit)
        .build()?
        .parse_statements()?;
    let statement = match (statements.pop_front(), statements.is_empty()) {
        (Some(statement), true) => statement,
        (None, _) => return datafusion::common::plan_err!("no SQL statement was given"),
        (Some(_), false) => {
            return datafusion::common::plan_err!("one SQL statement was expected, not several");
        }
    };
    let plan = state.statement_to_plan(statement).await?;
    context.execute_logical_plan(plan).await
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParser;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    use super::StreamingDialect;

    #[test]
    fn parses_a_table_version() {
        let sql = "SELECT * FROM e JOIN users FOR SYSTEM_TIME AS OF e.ts AS u ON u.id = e.id";
        let parsed = DFParser::parse_sql_with_dialect(sql, &StreamingDialect).unwrap();
        assert!(parsed[0].to_string().contains("FOR SYSTEM_TIME AS OF e.ts"));
        assert!(DFParser::parse_sql_with_dialect(sql, &GenericDialect).is_err());
    }

    #[test]
    fn parses_what_the_generic_dialect_parses() {
        let sql = "SELECT `a`, #b, x::INT FROM t WHERE s ILIKE 'a%' GROUP BY ALL LIMIT 1, 2";
        let generic = DFParser::parse_sql_with_dialect(sql, &GenericDialect).unwrap();
        let streaming = DFParser::parse_sql_with_dialect(sql, &StreamingDialect).unwrap();
        assert_eq!(generic, streaming);
    }
}
