//! From SQL text to a `Plan`: parses with sqlparser, resolves names against the standard's
//! schema, checks literal types, and refuses everything outside the query language with the
//! line and column where the refused text starts.
//!
//! Boundary: the SQL comes from a user (or from another node); nothing here panics on it.

use std::collections::BTreeSet;

use sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    Ident, JoinConstraint, JoinOperator, LimitClause, ObjectNamePart, OrderByKind, Query,
    SelectFlavor, SelectItem, SetExpr, Spanned, Statement, TableFactor, TableWithJoins,
    UnaryOperator, Value as SqlValue,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Span;

use crate::date::Date;
use crate::region::Tier;
use crate::schema::Table;

use super::error::{Position, QueryError};
use super::plan::{
    Aggregate, AggregateFunction, ColumnRef, Comparison, Dimension, Literal, Number, OrderKey,
    Output, OutputRef, Plan, Predicate, Source,
};
use super::value::ValueType;

/// Longest SQL text accepted.
pub const SQL_BYTES_MAX: usize = 16 * 1024;
/// Most GROUP BY keys.
pub const GROUP_KEYS_MAX: usize = 8;
/// Most distinct aggregates (selected and used by HAVING / ORDER BY).
pub const AGGREGATES_MAX: usize = 32;
/// Most values in one IN list.
pub const IN_LIST_VALUES_MAX: usize = 1024;
/// Most digits in a number literal.
pub const NUMBER_DIGITS_MAX: usize = 18;
/// Widest age band.
pub const AGE_BAND_WIDTH_MAX: u32 = 200;
/// Largest `substr` start or length.
pub const SUBSTR_ARGUMENT_MAX: u32 = 1000;

const FUNCTIONS_ACCEPTED: &str =
    "COUNT, SUM, AVG, MIN, MAX, MEDIAN, province, prefecture, county, township, substr, age, age_band";

/// Deepest nesting of parentheses (function calls included). sqlparser's work on some nested
/// calls (`substr(substr(...`) doubles with each level, so the text is refused before parsing.
pub const NESTING_MAX: usize = 16;
/// Most operators (AND, OR, NOT, comparisons, arithmetic) in one query. A chain of them parses
/// into a tree as deep as it is long, and planning walks that tree recursively: past this bound a
/// query is refused before it is parsed, so no input can exhaust the stack.
pub const OPERATORS_MAX: usize = 512;

/// Plans `sql` with `as_of` as the reference date for `age` and `age_band`.
pub fn plan(sql: &str, as_of: Date) -> Result<Plan, QueryError> {
    if sql.len() > SQL_BYTES_MAX {
        return Err(unsupported(
            None,
            format!(
                "the query is {} bytes long; at most {SQL_BYTES_MAX} are accepted",
                sql.len()
            ),
        ));
    }
    check_token_shape(sql)?;
    let statements =
        Parser::parse_sql(&GenericDialect {}, sql).map_err(|error| syntax_error(sql, error))?;
    let statement = match statements.as_slice() {
        [statement] => statement,
        [] => {
            return Err(QueryError::Syntax {
                position: None,
                message: "the text holds no statement; write one SELECT".to_string(),
            })
        }
        [_, second, ..] => {
            return Err(unsupported(
                at(second).or(Some(end_position(sql))),
                "only one statement is accepted; remove everything after the first `;`",
            ))
        }
    };
    let Statement::Query(query) = statement else {
        return Err(unsupported(
            Some(start_position(sql)),
            "only SELECT queries are accepted",
        ));
    };
    Planner::new(as_of).query(query)
}

/// Turns a parser error into a `Syntax` error, lifting sqlparser's "at Line: l, Column: c" into
/// the position; an error at the end of the text is placed just after its last character.
fn syntax_error(sql: &str, error: ParserError) -> QueryError {
    let text = match error {
        ParserError::TokenizerError(text) | ParserError::ParserError(text) => text,
        ParserError::RecursionLimitExceeded => {
            return QueryError::Syntax {
                position: None,
                message: "the query nests too deeply".to_string(),
            }
        }
    };
    if let Some(index) = text.rfind(" at Line: ") {
        let (message, location) = text.split_at(index);
        let numbers: Vec<u64> = location
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|part| part.parse().ok())
            .collect();
        if let [line, column] = numbers.as_slice() {
            return QueryError::Syntax {
                position: Some(Position {
                    line: *line,
                    column: *column,
                }),
                message: message.to_string(),
            };
        }
    }
    let position = text.ends_with("found: EOF").then(|| end_position(sql));
    QueryError::Syntax {
        position,
        message: text,
    }
}

/// The position of the first character that is not white space.
/// Refuses a query nested deeper than `NESTING_MAX` or with more than `OPERATORS_MAX`
/// operators, naming where the first token past the bound is, before the parser sees it. (Text
/// the tokenizer refuses is left for the parser to report.)
fn check_token_shape(sql: &str) -> Result<(), QueryError> {
    use sqlparser::keywords::Keyword;
    use sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        return Ok(());
    };
    let mut depth = 0usize;
    for token in &tokens {
        match token.token {
            Token::LParen => {
                depth += 1;
                if depth > NESTING_MAX {
                    return Err(unsupported(
                        position_of(token.span),
                        format!("the query nests parentheses more than {NESTING_MAX} levels deep"),
                    ));
                }
            }
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let operators = tokens.iter().filter(|token| {
        matches!(
            &token.token,
            Token::Word(word) if matches!(word.keyword, Keyword::AND | Keyword::OR | Keyword::NOT)
        ) || matches!(
            token.token,
            Token::Plus
                | Token::Minus
                | Token::Mul
                | Token::Div
                | Token::Mod
                | Token::StringConcat
                | Token::Eq
                | Token::DoubleEq
                | Token::Neq
                | Token::Lt
                | Token::Gt
                | Token::LtEq
                | Token::GtEq
                | Token::Spaceship
                | Token::Ampersand
                | Token::Pipe
                | Token::Caret
        )
    });
    if let Some(past) = operators.clone().nth(OPERATORS_MAX) {
        return Err(unsupported(
            position_of(past.span),
            format!(
                "the query has {} operators (AND, OR, NOT, comparisons, arithmetic); at most \
                 {OPERATORS_MAX} are accepted",
                operators.count()
            ),
        ));
    }
    Ok(())
}

fn start_position(sql: &str) -> Position {
    end_position(&sql[..sql.len() - sql.trim_start().len()])
}

/// The position just after the last character.
fn end_position(sql: &str) -> Position {
    let line = sql.matches('\n').count() as u64 + 1;
    let last_line = sql.rsplit('\n').next().unwrap_or("");
    Position {
        line,
        column: last_line.chars().count() as u64 + 1,
    }
}

fn position_of(span: Span) -> Option<Position> {
    (span.start.line != 0).then_some(Position {
        line: span.start.line,
        column: span.start.column,
    })
}

fn at(node: &impl Spanned) -> Option<Position> {
    position_of(node.span())
}

fn unsupported(position: Option<Position>, message: impl Into<String>) -> QueryError {
    QueryError::Unsupported {
        position,
        message: message.into(),
    }
}

fn type_error(position: Option<Position>, message: impl Into<String>) -> QueryError {
    QueryError::Type {
        position,
        message: message.into(),
    }
}

fn strip_nested(mut expression: &Expr) -> &Expr {
    while let Expr::Nested(inner) = expression {
        expression = inner;
    }
    expression
}

fn comparison_of(operator: &BinaryOperator) -> Option<Comparison> {
    Some(match operator {
        BinaryOperator::Eq => Comparison::Equal,
        BinaryOperator::NotEq => Comparison::NotEqual,
        BinaryOperator::Lt => Comparison::Less,
        BinaryOperator::LtEq => Comparison::LessOrEqual,
        BinaryOperator::Gt => Comparison::Greater,
        BinaryOperator::GtEq => Comparison::GreaterOrEqual,
        _ => return None,
    })
}

fn aggregate_function(name: &str) -> Option<AggregateFunction> {
    Some(match name {
        "count" => AggregateFunction::Count,
        "sum" => AggregateFunction::Sum,
        "avg" => AggregateFunction::Avg,
        "min" => AggregateFunction::Min,
        "max" => AggregateFunction::Max,
        "median" => AggregateFunction::Median,
        _ => return None,
    })
}

/// The lower-case name of a function called by a one-part name.
fn function_name(function: &Function) -> Option<String> {
    match function.name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Some(ident.value.to_lowercase()),
        _ => None,
    }
}

/// A literal, when `expression` is one (`Some(Err)` for a literal of a kind not accepted).
fn literal(expression: &Expr) -> Option<Result<Literal, QueryError>> {
    match expression {
        Expr::Nested(inner) => literal(inner),
        Expr::UnaryOp {
            op: operator @ (UnaryOperator::Minus | UnaryOperator::Plus),
            expr: inner,
        } => match strip_nested(inner) {
            Expr::Value(value) => match &value.value {
                SqlValue::Number(text, _) => Some(
                    parse_number(text, *operator == UnaryOperator::Minus, at(expression))
                        .map(Literal::Number),
                ),
                _ => None,
            },
            _ => None,
        },
        Expr::Value(value) => {
            let position = at(value);
            Some(match &value.value {
                SqlValue::Number(text, _) => {
                    parse_number(text, false, position).map(Literal::Number)
                }
                SqlValue::SingleQuotedString(text) => Ok(Literal::Text(text.clone())),
                SqlValue::Boolean(value) => Ok(Literal::Bool(*value)),
                SqlValue::Null => Err(unsupported(
                    position,
                    "NULL is not a value to compare with (a comparison with NULL is never true); \
                     write `IS NULL` or `IS NOT NULL`",
                )),
                other => Err(unsupported(
                    position,
                    format!(
                        "the literal `{other}` is not supported; write numbers (4000, 4000.5), \
                         'single-quoted text', true or false"
                    ),
                )),
            })
        }
        _ => None,
    }
}

/// Parses `digits[.digits]` exactly.
fn parse_number(
    text: &str,
    negative: bool,
    position: Option<Position>,
) -> Result<Number, QueryError> {
    let refuse = || {
        unsupported(
            position,
            format!(
                "the number `{text}` is not accepted; write plain digits with an optional decimal \
                 point, at most {NUMBER_DIGITS_MAX} significant digits and {NUMBER_DIGITS_MAX} \
                 decimals (no exponent)"
            ),
        )
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(refuse());
    }
    let fraction = fraction.trim_end_matches('0');
    let digits = format!("{whole}{fraction}");
    let significant = digits.trim_start_matches('0');
    if significant.len() > NUMBER_DIGITS_MAX || fraction.len() > NUMBER_DIGITS_MAX {
        return Err(refuse());
    }
    let mut mantissa: i128 = 0;
    for byte in significant.bytes() {
        mantissa = mantissa * 10 + i128::from(byte - b'0');
    }
    Ok(Number {
        mantissa: if negative { -mantissa } else { mantissa },
        scale: fraction.len() as u32,
    })
}

/// A `LIKE` pattern's prefix: `'abc%'` gives `abc`.
fn like_prefix(pattern: &str, position: Option<Position>) -> Result<String, QueryError> {
    match pattern.strip_suffix('%') {
        Some(prefix) if !prefix.contains(['%', '_', '\\']) => Ok(prefix.to_string()),
        _ => Err(unsupported(
            position,
            format!(
                "LIKE '{pattern}': only prefix patterns are supported, such as 'abc%' (one % at \
                 the end, no _ or \\)"
            ),
        )),
    }
}

/// What a literal is, for messages.
fn literal_kind(literal: &Literal) -> &'static str {
    match literal {
        Literal::Number(_) => "a number",
        Literal::Text(_) => "text",
        Literal::Bool(_) => "a boolean",
    }
}

fn type_name(value_type: ValueType) -> String {
    match value_type {
        ValueType::Enum(_) => "an enum".to_string(),
        other => other.describe(),
    }
}

fn accepted_literals(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::Int | ValueType::Decimal | ValueType::Float => {
            "compare it with a number such as 4000 or 4000.5"
        }
        ValueType::Bool => "compare it with true or false",
        ValueType::Text | ValueType::Enum(_) => "compare it with 'single-quoted text'",
        ValueType::DigitCode { .. } => "compare it with 'digits' or a whole number",
    }
}

/// Checks that `literal` may be compared with an operand of `value_type`; `equality` for `=`,
/// `<>` and IN, where an enum literal must be one of the enum's names.
fn check_literal(
    value_type: ValueType,
    equality: bool,
    literal: &Literal,
    position: Option<Position>,
    operand: &str,
) -> Result<(), QueryError> {
    let accepted = match (value_type, literal) {
        (ValueType::Int | ValueType::Decimal | ValueType::Float, Literal::Number(_))
        | (ValueType::Bool, Literal::Bool(_))
        | (ValueType::Text | ValueType::DigitCode { .. }, Literal::Text(_)) => true,
        (ValueType::DigitCode { width }, Literal::Number(number)) => {
            if number.as_integer().is_none() {
                return Err(type_error(
                    position,
                    format!(
                        "`{operand}` is a {width}-digit code; compare it with 'digits' or a whole \
                         number, not {}",
                        number.to_f64()
                    ),
                ));
            }
            true
        }
        (ValueType::Enum(names), Literal::Text(text)) => {
            if equality && !names.contains(&text.as_str()) {
                return Err(type_error(
                    position,
                    format!(
                        "`{operand}` has no value '{text}'; its values are {}",
                        names
                            .iter()
                            .map(|name| format!("'{name}'"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            true
        }
        _ => false,
    };
    if accepted {
        Ok(())
    } else {
        Err(type_error(
            position,
            format!(
                "`{operand}` is {}, so it cannot be compared with {}; {}",
                type_name(value_type),
                literal_kind(literal),
                accepted_literals(value_type)
            ),
        ))
    }
}

/// How a condition's operands are resolved: to dimensions (WHERE) or answer columns (HAVING).
type Resolve<O> = fn(&mut Planner, &Expr) -> Result<(O, ValueType), QueryError>;

/// One SELECT item as written.
struct SelectEntry {
    expression: Expr,
    alias: Option<Ident>,
}

struct Planner {
    as_of: Date,
    source: Source,
    /// Lower-case names a column may be qualified with, and their tables.
    qualifiers: Vec<(String, Table)>,
    columns: BTreeSet<ColumnRef>,
    keys: Vec<Dimension>,
    aggregates: Vec<Aggregate>,
    select: Vec<SelectEntry>,
    outputs: Vec<Output>,
    /// Where the expression being resolved sits, for messages ("in WHERE").
    clause: &'static str,
}

impl Planner {
    fn new(as_of: Date) -> Planner {
        Planner {
            as_of,
            source: Source::Households,
            qualifiers: Vec::new(),
            columns: BTreeSet::new(),
            keys: Vec::new(),
            aggregates: Vec::new(),
            select: Vec::new(),
            outputs: Vec::new(),
            clause: "here",
        }
    }

    fn query(mut self, query: &Query) -> Result<Plan, QueryError> {
        let query_position = at(query);
        if let Some(with) = &query.with {
            return Err(unsupported(
                at(with),
                "WITH (common table expressions) is not supported",
            ));
        }
        if let Some(fetch) = &query.fetch {
            return Err(unsupported(
                at(fetch).or(query_position),
                "FETCH is not supported; use LIMIT",
            ));
        }
        if !query.locks.is_empty() || query.for_clause.is_some() {
            return Err(unsupported(query_position, "FOR clauses are not supported"));
        }
        if query.settings.is_some()
            || query.format_clause.is_some()
            || !query.pipe_operators.is_empty()
        {
            return Err(unsupported(
                query_position,
                "SETTINGS, FORMAT and pipe operators are not supported",
            ));
        }
        let select = match query.body.as_ref() {
            SetExpr::Select(select) => select,
            SetExpr::Query(inner) => {
                return Err(unsupported(
                    at(inner.as_ref()),
                    "a parenthesised query is not supported",
                ))
            }
            SetExpr::SetOperation { op: operator, .. } => {
                return Err(unsupported(
                    at(query.body.as_ref()),
                    format!("{operator} is not supported; write one SELECT"),
                ))
            }
            other => {
                return Err(unsupported(
                    at(other).or(query_position),
                    "only SELECT queries are accepted",
                ))
            }
        };
        let select_position = position_of(select.select_token.0.span);
        if select.distinct.is_some() {
            return Err(unsupported(
                select_position,
                "SELECT DISTINCT is not supported; GROUP BY gives one row per distinct group",
            ));
        }
        if select.top.is_some() {
            return Err(unsupported(
                select_position,
                "TOP is not supported; use LIMIT",
            ));
        }
        if select.into.is_some() {
            return Err(unsupported(select_position, "SELECT INTO is not supported"));
        }
        if select.flavor != SelectFlavor::Standard {
            return Err(unsupported(
                select_position,
                "FROM-first queries are not supported; write SELECT ... FROM",
            ));
        }
        if select.exclude.is_some()
            || !select.lateral_views.is_empty()
            || select.prewhere.is_some()
            || !select.cluster_by.is_empty()
            || !select.distribute_by.is_empty()
            || !select.sort_by.is_empty()
            || !select.named_window.is_empty()
            || select.qualify.is_some()
            || select.value_table_mode.is_some()
            || select.connect_by.is_some()
        {
            return Err(unsupported(
                select_position,
                "only SELECT, FROM, WHERE, GROUP BY, HAVING, ORDER BY and LIMIT are supported",
            ));
        }

        self.from(&select.from, select_position)?;

        for item in &select.projection {
            match item {
                SelectItem::UnnamedExpr(expression) => self.select.push(SelectEntry {
                    expression: expression.clone(),
                    alias: None,
                }),
                SelectItem::ExprWithAlias {
                    expr: expression,
                    alias,
                } => self.select.push(SelectEntry {
                    expression: expression.clone(),
                    alias: Some(alias.clone()),
                }),
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    return Err(unsupported(
                        at(item),
                        "SELECT * is not supported; list group keys and aggregates, e.g. \
                         SELECT cause, COUNT(*) ... GROUP BY cause",
                    ))
                }
            }
        }
        if self.select.is_empty() {
            return Err(unsupported(select_position, "SELECT lists no columns"));
        }

        let filter = match &select.selection {
            Some(expression) => {
                self.clause = "in WHERE";
                Some(self.predicate(expression, Planner::where_operand)?)
            }
            None => None,
        };

        self.clause = "in GROUP BY";
        match &select.group_by {
            GroupByExpr::All(_) => {
                return Err(unsupported(
                    at(&select.group_by).or(select_position),
                    "GROUP BY ALL is not supported; list the grouping columns",
                ))
            }
            GroupByExpr::Expressions(expressions, modifiers) => {
                if !modifiers.is_empty() {
                    return Err(unsupported(
                        at(&select.group_by).or(select_position),
                        "GROUP BY modifiers (ROLLUP, CUBE, TOTALS) are not supported",
                    ));
                }
                for expression in expressions {
                    let key = self.group_key(expression)?;
                    if !self.keys.contains(&key) {
                        if self.keys.len() == GROUP_KEYS_MAX {
                            return Err(unsupported(
                                at(expression),
                                format!("at most {GROUP_KEYS_MAX} GROUP BY keys are accepted"),
                            ));
                        }
                        self.keys.push(key);
                    }
                }
            }
        }

        self.clause = "in SELECT";
        for index in 0..self.select.len() {
            let expression = self.select[index].expression.clone();
            let source = self.select_output(&expression)?;
            let name = match &self.select[index].alias {
                Some(alias) => alias.value.clone(),
                None => expression.to_string(),
            };
            self.outputs.push(Output { name, source });
        }

        let having = match &select.having {
            Some(expression) => {
                self.clause = "in HAVING";
                Some(self.predicate(expression, Planner::having_operand)?)
            }
            None => None,
        };

        let mut order_by = Vec::new();
        if let Some(order) = &query.order_by {
            self.clause = "in ORDER BY";
            if order.interpolate.is_some() {
                return Err(unsupported(
                    at(order),
                    "ORDER BY ... INTERPOLATE is not supported",
                ));
            }
            match &order.kind {
                OrderByKind::All(_) => {
                    return Err(unsupported(
                        at(order).or(query_position),
                        "ORDER BY ALL is not supported; list the columns",
                    ))
                }
                OrderByKind::Expressions(terms) => {
                    for term in terms {
                        if term.with_fill.is_some() {
                            return Err(unsupported(
                                at(term),
                                "ORDER BY ... WITH FILL is not supported",
                            ));
                        }
                        let source = self.order_operand(&term.expr)?;
                        order_by.push(OrderKey {
                            source,
                            descending: term.options.asc == Some(false),
                            nulls_first: term.options.nulls_first.unwrap_or(false),
                        });
                    }
                }
            }
        }

        let limit = self.limit(query)?;

        Ok(Plan {
            as_of: self.as_of,
            source: self.source,
            filter,
            keys: self.keys,
            aggregates: self.aggregates,
            outputs: self.outputs,
            having,
            order_by,
            limit,
            columns: self.columns.into_iter().collect(),
        })
    }

    fn limit(&self, query: &Query) -> Result<Option<u64>, QueryError> {
        match &query.limit_clause {
            None => Ok(None),
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                if let Some(offset) = offset {
                    return Err(unsupported(at(offset), "OFFSET is not supported"));
                }
                if let Some(first) = limit_by.first() {
                    return Err(unsupported(at(first), "LIMIT ... BY is not supported"));
                }
                let Some(expression) = limit else {
                    return Ok(None);
                };
                match literal(expression) {
                    Some(Ok(Literal::Number(number))) => match number.as_integer() {
                        Some(count) if count >= 0 => Ok(Some(count as u64)),
                        _ => Err(unsupported(
                            at(expression),
                            format!("LIMIT {expression}: write a whole number 0 or more"),
                        )),
                    },
                    Some(Err(error)) => Err(error),
                    _ => Err(unsupported(
                        at(expression),
                        format!("LIMIT {expression}: write a whole number 0 or more"),
                    )),
                }
            }
            Some(clause @ LimitClause::OffsetCommaLimit { .. }) => Err(unsupported(
                at(clause),
                "LIMIT offset, count is not supported; write LIMIT count",
            )),
        }
    }

    // ---- FROM ----------------------------------------------------------------------------

    fn from(
        &mut self,
        from: &[TableWithJoins],
        select_position: Option<Position>,
    ) -> Result<(), QueryError> {
        const ACCEPTED: &str =
            "FROM households, FROM persons, or FROM persons JOIN households USING (household_id)";
        let relation = match from {
            [] => {
                return Err(unsupported(
                    select_position,
                    format!("a FROM clause is required: {ACCEPTED}"),
                ))
            }
            [relation] => relation,
            [_, second, ..] => {
                return Err(unsupported(
                    at(second),
                    format!("comma-separated tables are not supported; write {ACCEPTED}"),
                ))
            }
        };
        let first = self.table(&relation.relation)?;
        match relation.joins.as_slice() {
            [] => {
                self.source = match first {
                    Table::Households => Source::Households,
                    Table::Persons => Source::Persons,
                };
                Ok(())
            }
            [join] => {
                let second = self.table(&join.relation)?;
                let constraint = match &join.join_operator {
                    JoinOperator::Join(constraint) | JoinOperator::Inner(constraint) => constraint,
                    _ => {
                        return Err(unsupported(
                            at(join),
                            format!("only an inner join is supported: {ACCEPTED}"),
                        ))
                    }
                };
                if first == second {
                    return Err(unsupported(
                        at(join),
                        format!("a table joined with itself is not supported; {ACCEPTED}"),
                    ));
                }
                self.join_constraint(constraint, at(join))?;
                self.source = Source::PersonsJoinHouseholds;
                Ok(())
            }
            [_, second, ..] => Err(unsupported(
                at(second),
                format!("only one join is supported: {ACCEPTED}"),
            )),
        }
    }

    /// Resolves a table of FROM and records its qualifiers (its name and alias).
    fn table(&mut self, factor: &TableFactor) -> Result<Table, QueryError> {
        let position = at(factor);
        let TableFactor::Table {
            name,
            alias,
            args,
            with_hints,
            version,
            partitions,
            with_ordinality,
            json_path,
            sample,
            index_hints,
        } = factor
        else {
            let message = match factor {
                TableFactor::Derived { .. } => "subqueries are not supported".to_string(),
                other => {
                    format!("`{other}` is not supported; the tables are households and persons")
                }
            };
            return Err(unsupported(position, message));
        };
        if args.is_some()
            || !with_hints.is_empty()
            || version.is_some()
            || !partitions.is_empty()
            || *with_ordinality
            || json_path.is_some()
            || sample.is_some()
            || !index_hints.is_empty()
        {
            return Err(unsupported(
                position,
                format!("`{factor}`: name a table and optionally an alias, nothing more"),
            ));
        }
        let table = match name.0.as_slice() {
            [ObjectNamePart::Identifier(ident)] => Table::parse(&ident.value.to_lowercase()),
            _ => None,
        };
        let Some(table) = table else {
            return Err(QueryError::Unknown {
                position: at(name),
                message: format!("`{name}` is not a table; the tables are households and persons"),
            });
        };
        self.qualifiers.push((table.name().to_string(), table));
        if let Some(alias) = alias {
            if !alias.columns.is_empty() {
                return Err(unsupported(
                    at(alias),
                    "column aliases on a table are not supported",
                ));
            }
            self.qualifiers
                .push((alias.name.value.to_lowercase(), table));
        }
        Ok(table)
    }

    fn join_constraint(
        &mut self,
        constraint: &JoinConstraint,
        position: Option<Position>,
    ) -> Result<(), QueryError> {
        let accepted = "join on household_id: USING (household_id) or ON persons.household_id = \
                        households.household_id";
        match constraint {
            JoinConstraint::Natural => Ok(()),
            JoinConstraint::Using(names) => match names.as_slice() {
                [name] if name.to_string().eq_ignore_ascii_case("household_id") => Ok(()),
                _ => Err(unsupported(
                    names.first().and_then(at).or(position),
                    format!(
                        "USING ({}): {accepted}",
                        names
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            },
            JoinConstraint::On(expression) => {
                let refuse = || {
                    unsupported(
                        at(expression).or(position),
                        format!("ON {expression}: {accepted}"),
                    )
                };
                let Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                } = strip_nested(expression)
                else {
                    return Err(refuse());
                };
                let (Expr::CompoundIdentifier(left), Expr::CompoundIdentifier(right)) =
                    (left.as_ref(), right.as_ref())
                else {
                    return Err(refuse());
                };
                let side = |parts: &[Ident]| -> Option<Table> {
                    match parts {
                        [qualifier, column]
                            if column.value.eq_ignore_ascii_case("household_id") =>
                        {
                            self.qualifier_table(&qualifier.value)
                        }
                        _ => None,
                    }
                };
                match (side(left), side(right)) {
                    (Some(left), Some(right)) if left != right => Ok(()),
                    _ => Err(refuse()),
                }
            }
            JoinConstraint::None => Err(unsupported(
                position,
                format!("a join needs a condition: {accepted}"),
            )),
        }
    }

    fn qualifier_table(&self, qualifier: &str) -> Option<Table> {
        let qualifier = qualifier.to_lowercase();
        self.qualifiers
            .iter()
            .find(|(name, _)| *name == qualifier)
            .map(|(_, table)| *table)
    }

    // ---- names -----------------------------------------------------------------------------

    fn is_column_name(&self, ident: &Ident) -> bool {
        let name = ident.value.to_lowercase();
        self.source
            .tables()
            .iter()
            .any(|table| table.column(&name).is_some())
    }

    /// Resolves `column` or `table.column`, without the personal-column check.
    fn resolve_column(&mut self, parts: &[Ident]) -> Result<ColumnRef, QueryError> {
        let (qualifier, ident) = match parts {
            [ident] => (None, ident),
            [qualifier, ident] => {
                let Some(table) = self.qualifier_table(&qualifier.value) else {
                    let known: Vec<&str> = self
                        .qualifiers
                        .iter()
                        .map(|(name, _)| name.as_str())
                        .collect();
                    return Err(QueryError::Unknown {
                        position: position_of(qualifier.span),
                        message: format!(
                            "`{}` is not a table of this query; FROM names {}",
                            qualifier.value,
                            known.join(", ")
                        ),
                    });
                };
                (Some(table), ident)
            }
            _ => {
                let text = parts
                    .iter()
                    .map(|part| part.value.as_str())
                    .collect::<Vec<_>>()
                    .join(".");
                return Err(unsupported(
                    parts.first().map(|part| part.span).and_then(position_of),
                    format!("`{text}`: name a column as `column` or `table.column`"),
                ));
            }
        };
        let name = ident.value.to_lowercase();
        let found = self
            .source
            .tables()
            .iter()
            .filter(|table| qualifier.is_none_or(|qualifier| qualifier == **table))
            .find_map(|table| table.column(&name).map(|column| (*table, column)));
        let Some((mut table, column)) = found else {
            let tables: Vec<Table> = match qualifier {
                Some(table) => vec![table],
                None => self.source.tables().to_vec(),
            };
            let columns: Vec<&str> = tables
                .iter()
                .flat_map(|table| table.columns())
                .filter(|column| !column.personal)
                .map(|column| column.name)
                .collect();
            let table_names: Vec<&str> = tables.iter().map(|table| table.name()).collect();
            return Err(QueryError::Unknown {
                position: position_of(ident.span),
                message: format!(
                    "`{}` is not a column of {}; the columns are {}",
                    ident.value,
                    table_names.join(" or "),
                    columns.join(", ")
                ),
            });
        };
        if self.source == Source::PersonsJoinHouseholds && column.name == "household_id" {
            table = Table::Households;
        }
        Ok(ColumnRef {
            table,
            name: column.name,
        })
    }

    /// A column used as a value: refused when personal.
    fn column(&mut self, parts: &[Ident]) -> Result<ColumnRef, QueryError> {
        let column = self.resolve_column(parts)?;
        if column.column().personal {
            return Err(QueryError::Personal {
                position: parts.first().map(|part| part.span).and_then(position_of),
                column: column.name.to_string(),
            });
        }
        self.columns.insert(column);
        Ok(column)
    }

    // ---- scalar expressions ----------------------------------------------------------------

    fn scalar(&mut self, expression: &Expr) -> Result<Dimension, QueryError> {
        let position = at(expression);
        match expression {
            Expr::Nested(inner) => self.scalar(inner),
            Expr::Identifier(ident) => {
                Ok(Dimension::Column(self.column(std::slice::from_ref(ident))?))
            }
            Expr::CompoundIdentifier(parts) => Ok(Dimension::Column(self.column(parts)?)),
            Expr::Function(function) => self.function(function),
            Expr::Substring {
                expr: source,
                substring_from,
                substring_for,
                ..
            } => match (substring_from, substring_for) {
                (Some(start), Some(length)) => self.substr(source, start, length),
                _ => Err(unsupported(
                    position,
                    format!("`{expression}`: substr takes (column, start, length)"),
                )),
            },
            Expr::Value(_) | Expr::TypedString(_) => Err(unsupported(
                position,
                format!(
                    "the constant `{expression}` is not accepted {}; name a column or a dimension",
                    self.clause
                ),
            )),
            Expr::UnaryOp { op: operator, .. } if *operator != UnaryOperator::Not => {
                Err(unsupported(
                    position,
                    format!("`{expression}`: arithmetic is not supported"),
                ))
            }
            Expr::BinaryOp { op: operator, .. }
                if comparison_of(operator).is_none()
                    && !matches!(operator, BinaryOperator::And | BinaryOperator::Or) =>
            {
                Err(unsupported(
                    position,
                    format!(
                        "`{expression}`: arithmetic and operators such as `{operator}` are not \
                         supported"
                    ),
                ))
            }
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                Err(unsupported(position, "subqueries are not supported"))
            }
            Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => {
                Err(unsupported(position, "`*` is accepted only in COUNT(*)"))
            }
            Expr::Cast { .. } => Err(unsupported(
                position,
                format!("`{expression}`: CAST is not supported"),
            )),
            Expr::Case { .. } => Err(unsupported(
                position,
                format!("`{expression}`: CASE is not supported"),
            )),
            Expr::BinaryOp { .. }
            | Expr::UnaryOp { .. }
            | Expr::InList { .. }
            | Expr::Between { .. }
            | Expr::Like { .. }
            | Expr::IsNull(_)
            | Expr::IsNotNull(_) => Err(unsupported(
                position,
                format!(
                    "the condition `{expression}` is not accepted {}; conditions \
                     belong in WHERE or HAVING",
                    self.clause
                ),
            )),
            other => Err(unsupported(
                position,
                format!(
                    "`{other}` is not supported {}; accepted: columns and the functions \
                     {FUNCTIONS_ACCEPTED}",
                    self.clause
                ),
            )),
        }
    }

    /// The arguments of a plain call: no DISTINCT, FILTER, OVER, named arguments or clauses.
    fn plain_arguments<'f>(
        &self,
        function: &'f Function,
        name: &str,
    ) -> Result<Vec<&'f FunctionArgExpr>, QueryError> {
        let position = at(function);
        if function.over.is_some() {
            return Err(unsupported(
                position,
                format!("`{function}`: window functions (OVER) are not supported"),
            ));
        }
        if function.filter.is_some() {
            return Err(unsupported(
                position,
                format!("`{function}`: FILTER is not supported; use WHERE"),
            ));
        }
        if function.uses_odbc_syntax
            || !matches!(function.parameters, FunctionArguments::None)
            || !function.within_group.is_empty()
            || function.null_treatment.is_some()
        {
            return Err(unsupported(
                position,
                format!("`{function}`: write a plain call {name}(...)"),
            ));
        }
        let list = match &function.args {
            FunctionArguments::List(list) => list,
            FunctionArguments::None => {
                return Err(unsupported(
                    position,
                    format!("`{function}`: {name} needs arguments in parentheses"),
                ))
            }
            FunctionArguments::Subquery(_) => {
                return Err(unsupported(position, "subqueries are not supported"))
            }
        };
        if let Some(treatment) = list.duplicate_treatment {
            if treatment == sqlparser::ast::DuplicateTreatment::Distinct {
                return Err(unsupported(
                    position,
                    format!("`{function}`: DISTINCT inside a function is not supported"),
                ));
            }
        }
        if !list.clauses.is_empty() {
            return Err(unsupported(
                position,
                format!("`{function}`: clauses inside the argument list are not supported"),
            ));
        }
        list.args
            .iter()
            .map(|argument| match argument {
                FunctionArg::Unnamed(argument) => Ok(argument),
                other => Err(unsupported(
                    at(other).or(position),
                    format!("`{function}`: named arguments are not supported"),
                )),
            })
            .collect()
    }

    /// A non-aggregate function call: one of the derived dimensions.
    fn function(&mut self, function: &Function) -> Result<Dimension, QueryError> {
        let position = at(function);
        let Some(name) = function_name(function) else {
            return Err(unsupported(
                position,
                format!(
                    "the function `{}` is not supported; accepted: {FUNCTIONS_ACCEPTED}",
                    function.name
                ),
            ));
        };
        if aggregate_function(&name).is_some() {
            let advice = match self.clause {
                "in WHERE" => "; filter groups with HAVING",
                "in GROUP BY" => "; group by columns and dimensions",
                _ => "",
            };
            return Err(unsupported(
                position,
                format!(
                    "the aggregate `{function}` is not accepted {}{advice}",
                    self.clause
                ),
            ));
        }
        let tier = match name.as_str() {
            "province" => Some(Tier::Province),
            "prefecture" => Some(Tier::Prefecture),
            "county" => Some(Tier::County),
            "township" => Some(Tier::Township),
            _ => None,
        };
        if !matches!(
            name.as_str(),
            "province"
                | "prefecture"
                | "county"
                | "township"
                | "age"
                | "age_band"
                | "substr"
                | "substring"
        ) {
            return Err(unsupported(
                position,
                format!(
                    "the function `{}` is not supported; accepted: {FUNCTIONS_ACCEPTED}",
                    function.name
                ),
            ));
        }
        let arguments = self.plain_arguments(function, &name)?;
        let expressions: Vec<&Expr> = arguments
            .iter()
            .map(|argument| match argument {
                FunctionArgExpr::Expr(expression) => Ok(expression),
                _ => Err(unsupported(
                    position,
                    format!("`{function}`: `*` is accepted only in COUNT(*)"),
                )),
            })
            .collect::<Result<_, _>>()?;
        if let Some(tier) = tier {
            let [argument] = expressions.as_slice() else {
                return Err(unsupported(
                    position,
                    format!("`{function}`: {name}() takes one argument, region_code"),
                ));
            };
            let column = self.column_argument(argument, &name, "region_code", position)?;
            return Ok(Dimension::Ancestor { tier, code: column });
        }
        match (name.as_str(), expressions.as_slice()) {
            ("age", [argument]) => {
                let birth_date = self.column_argument(argument, &name, "birth_date", position)?;
                Ok(Dimension::Age { birth_date })
            }
            ("age_band", [argument, width]) => {
                let birth_date = self.column_argument(argument, &name, "birth_date", position)?;
                let width =
                    self.whole_argument(width, "the age_band width", 1, AGE_BAND_WIDTH_MAX)?;
                Ok(Dimension::AgeBand { birth_date, width })
            }
            ("substr" | "substring", [source, start, length]) => self.substr(source, start, length),
            ("age", _) => Err(unsupported(
                position,
                format!("`{function}`: age() takes one argument, birth_date"),
            )),
            ("age_band", _) => Err(unsupported(
                position,
                format!(
                    "`{function}`: age_band() takes birth_date and a band width, \
                     e.g. age_band(birth_date, 10)"
                ),
            )),
            _ => Err(unsupported(
                position,
                format!("`{function}`: substr takes (column, start, length)"),
            )),
        }
    }

    /// The column argument of a derived dimension, which must be `expected`.
    fn column_argument(
        &mut self,
        argument: &Expr,
        function: &str,
        expected: &str,
        position: Option<Position>,
    ) -> Result<ColumnRef, QueryError> {
        let refuse = || {
            type_error(
                at(argument).or(position),
                format!("{function}() takes the column {expected}, not `{argument}`"),
            )
        };
        let column = match strip_nested(argument) {
            Expr::Identifier(ident) => self.resolve_column(std::slice::from_ref(ident))?,
            Expr::CompoundIdentifier(parts) => self.resolve_column(parts)?,
            _ => return Err(refuse()),
        };
        if column.name != expected {
            return Err(refuse());
        }
        self.columns.insert(column);
        Ok(column)
    }

    fn whole_argument(
        &self,
        expression: &Expr,
        what: &str,
        min: u32,
        max: u32,
    ) -> Result<u32, QueryError> {
        let refuse = || {
            unsupported(
                at(expression),
                format!("{what} must be a whole number from {min} to {max}, not `{expression}`"),
            )
        };
        match literal(expression) {
            Some(Ok(Literal::Number(number))) => match number.as_integer() {
                Some(value) if (i64::from(min)..=i64::from(max)).contains(&value) => {
                    Ok(value as u32)
                }
                _ => Err(refuse()),
            },
            _ => Err(refuse()),
        }
    }

    fn substr(
        &mut self,
        source: &Expr,
        start: &Expr,
        length: &Expr,
    ) -> Result<Dimension, QueryError> {
        let dimension = self.scalar(source)?;
        let value_type = dimension.value_type();
        if !value_type.is_textual() {
            return Err(type_error(
                at(source),
                format!(
                    "substr() takes text, an enum or a code; `{source}` is {}",
                    type_name(value_type)
                ),
            ));
        }
        let start = self.whole_argument(start, "the substr start", 1, SUBSTR_ARGUMENT_MAX)?;
        let length = self.whole_argument(length, "the substr length", 0, SUBSTR_ARGUMENT_MAX)?;
        Ok(Dimension::Substr {
            source: Box::new(dimension),
            start,
            length,
        })
    }

    /// An aggregate call, or `None` when `function` is not an aggregate.
    fn aggregate_call(&mut self, function: &Function) -> Result<Option<Aggregate>, QueryError> {
        let Some(name) = function_name(function) else {
            return Ok(None);
        };
        let Some(kind) = aggregate_function(&name) else {
            return Ok(None);
        };
        let position = at(function);
        let arguments = self.plain_arguments(function, &name)?;
        let [argument] = arguments.as_slice() else {
            return Err(unsupported(
                position,
                format!("`{function}`: {name} takes one argument"),
            ));
        };
        let expression = match argument {
            FunctionArgExpr::Wildcard if kind == AggregateFunction::Count => {
                return Ok(Some(Aggregate {
                    function: AggregateFunction::CountRows,
                    argument: None,
                }))
            }
            FunctionArgExpr::Expr(expression) => expression,
            _ => {
                return Err(unsupported(
                    position,
                    format!("`{function}`: `*` is accepted only in COUNT(*)"),
                ))
            }
        };
        let clause = std::mem::replace(&mut self.clause, "inside another aggregate");
        let dimension = self.scalar(expression);
        self.clause = clause;
        let dimension = dimension?;
        let value_type = dimension.value_type();
        if matches!(
            kind,
            AggregateFunction::Sum | AggregateFunction::Avg | AggregateFunction::Median
        ) && !value_type.is_summable()
        {
            return Err(type_error(
                at(expression).or(position),
                format!(
                    "{} takes an integer or decimal; `{expression}` is {}",
                    name.to_uppercase(),
                    type_name(value_type)
                ),
            ));
        }
        Ok(Some(Aggregate {
            function: kind,
            argument: Some(dimension),
        }))
    }

    fn add_aggregate(
        &mut self,
        aggregate: Aggregate,
        position: Option<Position>,
    ) -> Result<usize, QueryError> {
        if let Some(index) = self.aggregates.iter().position(|known| *known == aggregate) {
            return Ok(index);
        }
        if self.aggregates.len() == AGGREGATES_MAX {
            return Err(unsupported(
                position,
                format!("at most {AGGREGATES_MAX} aggregates are accepted"),
            ));
        }
        self.aggregates.push(aggregate);
        Ok(self.aggregates.len() - 1)
    }

    /// An aggregate at `expression`, added to the plan, or `None` when `expression` is not an
    /// aggregate call.
    fn aggregate_output(&mut self, expression: &Expr) -> Result<Option<OutputRef>, QueryError> {
        let Expr::Function(function) = strip_nested(expression) else {
            return Ok(None);
        };
        match self.aggregate_call(function)? {
            Some(aggregate) => Ok(Some(OutputRef::Aggregate(
                self.add_aggregate(aggregate, at(expression))?,
            ))),
            None => Ok(None),
        }
    }

    fn key_output(&mut self, expression: &Expr) -> Result<OutputRef, QueryError> {
        let dimension = self.scalar(expression)?;
        match self.keys.iter().position(|key| *key == dimension) {
            Some(index) => Ok(OutputRef::Key(index)),
            None => Err(unsupported(
                at(expression),
                format!(
                    "`{expression}` is neither in GROUP BY nor inside an aggregate; \
                     add it to GROUP BY or aggregate it"
                ),
            )),
        }
    }

    fn select_output(&mut self, expression: &Expr) -> Result<OutputRef, QueryError> {
        match self.aggregate_output(expression)? {
            Some(output) => Ok(output),
            None => self.key_output(expression),
        }
    }

    /// The select entry an identifier names by its alias (when it is not a column).
    fn select_alias(&self, expression: &Expr) -> Option<usize> {
        let Expr::Identifier(ident) = strip_nested(expression) else {
            return None;
        };
        if self.is_column_name(ident) {
            return None;
        }
        self.select.iter().position(|entry| {
            entry
                .alias
                .as_ref()
                .is_some_and(|alias| alias.value.eq_ignore_ascii_case(&ident.value))
        })
    }

    /// A select entry named by a 1-based ordinal literal.
    fn select_ordinal(&self, expression: &Expr, clause: &str) -> Result<Option<usize>, QueryError> {
        let Some(literal) = literal(expression) else {
            return Ok(None);
        };
        let refuse = || {
            unsupported(
                at(expression),
                format!(
                    "{clause} {expression}: a number names a SELECT column, 1 to {}",
                    self.select.len()
                ),
            )
        };
        match literal {
            Ok(Literal::Number(number)) => match number.as_integer() {
                Some(ordinal) if ordinal >= 1 && ordinal as usize <= self.select.len() => {
                    Ok(Some(ordinal as usize - 1))
                }
                _ => Err(refuse()),
            },
            _ => Err(refuse()),
        }
    }

    fn group_key(&mut self, expression: &Expr) -> Result<Dimension, QueryError> {
        if let Expr::Rollup(_) | Expr::Cube(_) | Expr::GroupingSets(_) = expression {
            return Err(unsupported(
                at(expression),
                "ROLLUP, CUBE and GROUPING SETS are not supported",
            ));
        }
        let named = match self.select_ordinal(expression, "GROUP BY")? {
            Some(index) => Some(index),
            None => self.select_alias(expression),
        };
        let Some(index) = named else {
            return self.scalar(expression);
        };
        let target = self.select[index].expression.clone();
        if let Expr::Function(function) = strip_nested(&target) {
            if function_name(function).is_some_and(|name| aggregate_function(&name).is_some()) {
                return Err(unsupported(
                    at(expression),
                    format!(
                        "GROUP BY {expression} names the aggregate `{target}`; group by columns \
                         and dimensions"
                    ),
                ));
            }
        }
        self.scalar(&target)
    }

    // ---- conditions ------------------------------------------------------------------------

    fn where_operand(&mut self, expression: &Expr) -> Result<(Dimension, ValueType), QueryError> {
        let dimension = self.scalar(expression)?;
        let value_type = dimension.value_type();
        Ok((dimension, value_type))
    }

    fn having_operand(&mut self, expression: &Expr) -> Result<(OutputRef, ValueType), QueryError> {
        let output = match self.aggregate_output(expression)? {
            Some(output) => output,
            None => match self.select_alias(expression) {
                Some(index) => self.outputs[index].source,
                None => self.key_output(expression)?,
            },
        };
        let value_type = match output {
            OutputRef::Key(index) => self.keys[index].value_type(),
            OutputRef::Aggregate(index) => self.aggregates[index].value_type(),
        };
        Ok((output, value_type))
    }

    fn order_operand(&mut self, expression: &Expr) -> Result<OutputRef, QueryError> {
        if let Some(index) = self.select_ordinal(expression, "ORDER BY")? {
            return Ok(self.outputs[index].source);
        }
        if let Expr::Identifier(ident) = strip_nested(expression) {
            let named = self.select.iter().position(|entry| {
                entry
                    .alias
                    .as_ref()
                    .is_some_and(|alias| alias.value.eq_ignore_ascii_case(&ident.value))
            });
            if let Some(index) = named {
                return Ok(self.outputs[index].source);
            }
        }
        Ok(self.having_operand(expression)?.0)
    }

    fn predicate<O>(
        &mut self,
        expression: &Expr,
        resolve: Resolve<O>,
    ) -> Result<Predicate<O>, QueryError> {
        let position = at(expression);
        match expression {
            Expr::Nested(inner) => self.predicate(inner, resolve),
            Expr::BinaryOp {
                left,
                op: operator @ (BinaryOperator::And | BinaryOperator::Or),
                right,
            } => {
                let is_and = *operator == BinaryOperator::And;
                let mut parts = Vec::new();
                for side in [left, right] {
                    match (self.predicate(side, resolve)?, is_and) {
                        (Predicate::And(inner), true) | (Predicate::Or(inner), false) => {
                            parts.extend(inner)
                        }
                        (part, _) => parts.push(part),
                    }
                }
                Ok(if is_and {
                    Predicate::And(parts)
                } else {
                    Predicate::Or(parts)
                })
            }
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr: inner,
            } => Ok(Predicate::Not(Box::new(self.predicate(inner, resolve)?))),
            Expr::BinaryOp {
                left,
                op: operator,
                right,
            } => match comparison_of(operator) {
                Some(operator) => self.comparison(left, operator, right, resolve),
                None => Err(unsupported(
                    position,
                    format!(
                        "`{expression}`: the operator `{operator}` is not supported; conditions \
                         use = <> < <= > >=, IN, BETWEEN, LIKE, IS NULL, AND, OR, NOT"
                    ),
                )),
            },
            Expr::InList {
                expr: operand,
                list,
                negated,
            } => {
                if list.len() > IN_LIST_VALUES_MAX {
                    return Err(unsupported(
                        position,
                        format!("IN lists hold at most {IN_LIST_VALUES_MAX} values"),
                    ));
                }
                let (operand_value, value_type) = resolve(self, operand)?;
                let mut literals = Vec::with_capacity(list.len());
                for item in list {
                    literals.push(self.checked_literal(item, value_type, true, operand)?);
                }
                Ok(Predicate::In {
                    operand: operand_value,
                    list: literals,
                    negated: *negated,
                })
            }
            Expr::Between {
                expr: operand,
                negated,
                low,
                high,
            } => {
                let (operand_value, value_type) = resolve(self, operand)?;
                let low = self.checked_literal(low, value_type, false, operand)?;
                let high = self.checked_literal(high, value_type, false, operand)?;
                Ok(Predicate::Between {
                    operand: operand_value,
                    low,
                    high,
                    negated: *negated,
                })
            }
            Expr::Like {
                negated,
                any,
                expr: operand,
                pattern,
                escape_char,
            } => {
                if *any || escape_char.is_some() {
                    return Err(unsupported(
                        position,
                        "LIKE ANY and LIKE ... ESCAPE are not supported; write LIKE 'prefix%'",
                    ));
                }
                let (operand_value, value_type) = resolve(self, operand)?;
                if !value_type.is_textual() {
                    return Err(type_error(
                        at(operand.as_ref()),
                        format!(
                            "LIKE applies to text, enum and code columns; `{operand}` is {}",
                            type_name(value_type)
                        ),
                    ));
                }
                let prefix = match strip_nested(pattern) {
                    Expr::Value(value) => match &value.value {
                        SqlValue::SingleQuotedString(text) => like_prefix(text, at(value))?,
                        _ => {
                            return Err(unsupported(
                                at(value),
                                "LIKE takes a 'prefix%' pattern in single quotes",
                            ))
                        }
                    },
                    other => {
                        return Err(unsupported(
                            at(other),
                            "LIKE takes a 'prefix%' pattern in single quotes",
                        ))
                    }
                };
                Ok(Predicate::LikePrefix {
                    operand: operand_value,
                    prefix,
                    negated: *negated,
                })
            }
            Expr::ILike { .. } | Expr::SimilarTo { .. } | Expr::RLike { .. } => Err(unsupported(
                position.or_else(|| self.first_position(expression)),
                "ILIKE, SIMILAR TO and regular expressions are not supported; write LIKE 'prefix%'",
            )),
            Expr::IsNull(operand) | Expr::IsNotNull(operand) => {
                let (operand_value, _) = resolve(self, operand)?;
                Ok(Predicate::IsNull {
                    operand: operand_value,
                    negated: matches!(expression, Expr::IsNotNull(_)),
                })
            }
            Expr::IsTrue(_)
            | Expr::IsFalse(_)
            | Expr::IsNotTrue(_)
            | Expr::IsNotFalse(_)
            | Expr::IsUnknown(_)
            | Expr::IsNotUnknown(_)
            | Expr::IsDistinctFrom(..)
            | Expr::IsNotDistinctFrom(..) => Err(unsupported(
                position,
                format!(
                    "`{expression}`: IS [NOT] TRUE/FALSE/UNKNOWN/DISTINCT FROM are \
                     not supported; compare with = true or = false"
                ),
            )),
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                Err(unsupported(position, "subqueries are not supported"))
            }
            Expr::Value(_) => Err(unsupported(
                position,
                format!(
                    "the constant `{expression}` is not a condition; compare a column with a value"
                ),
            )),
            other => {
                let (operand, value_type) = resolve(self, other)?;
                if value_type == ValueType::Bool {
                    Ok(Predicate::IsTrue { operand })
                } else {
                    Err(type_error(
                        position,
                        format!(
                            "`{other}` is {}, not a condition; compare it with a value",
                            type_name(value_type)
                        ),
                    ))
                }
            }
        }
    }

    fn first_position(&self, expression: &Expr) -> Option<Position> {
        match expression {
            Expr::ILike {
                expr: expression, ..
            }
            | Expr::SimilarTo {
                expr: expression, ..
            }
            | Expr::RLike {
                expr: expression, ..
            } => at(expression.as_ref()),
            _ => None,
        }
    }

    fn checked_literal(
        &mut self,
        item: &Expr,
        value_type: ValueType,
        equality: bool,
        operand: &Expr,
    ) -> Result<Literal, QueryError> {
        match literal(item) {
            Some(literal) => {
                let literal = literal?;
                check_literal(
                    value_type,
                    equality,
                    &literal,
                    at(item),
                    &operand.to_string(),
                )?;
                Ok(literal)
            }
            None => Err(unsupported(
                at(item),
                format!(
                    "`{item}`: only constants are accepted here (numbers, 'text', true, false)"
                ),
            )),
        }
    }

    fn comparison<O>(
        &mut self,
        left: &Expr,
        operator: Comparison,
        right: &Expr,
        resolve: Resolve<O>,
    ) -> Result<Predicate<O>, QueryError> {
        let (operand, operator, literal_expression) = match (literal(left), literal(right)) {
            (None, Some(_)) => (left, operator, right),
            (Some(_), None) => (right, operator.flipped(), left),
            (Some(_), Some(_)) => {
                return Err(unsupported(
                    at(left),
                    format!(
                    "`{left}` and `{right}` are both constants; compare a column with a constant"
                ),
                ))
            }
            (None, None) => {
                resolve(self, left)?;
                resolve(self, right)?;
                return Err(unsupported(
                    at(right),
                    format!(
                        "`{right}` is not a constant: comparing two columns is not \
                         supported; compare a column with a constant"
                    ),
                ));
            }
        };
        let (operand_value, value_type) = resolve(self, operand)?;
        let literal = self.checked_literal(
            literal_expression,
            value_type,
            operator.is_equality(),
            operand,
        )?;
        Ok(Predicate::Compare {
            operand: operand_value,
            comparison: operator,
            literal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_exactly() {
        let number = |text: &str| parse_number(text, false, None).ok();
        assert_eq!(
            number("4000.50"),
            Some(Number {
                mantissa: 40005,
                scale: 1
            })
        );
        assert_eq!(
            number("4000"),
            Some(Number {
                mantissa: 4000,
                scale: 0
            })
        );
        assert_eq!(
            number("0.00"),
            Some(Number {
                mantissa: 0,
                scale: 0
            })
        );
        assert_eq!(
            number(".5"),
            Some(Number {
                mantissa: 5,
                scale: 1
            })
        );
        assert_eq!(number("1e3"), None);
        assert_eq!(number("1234567890123456789"), None);
        assert_eq!(number("000000001234567890123456789.0"), None);
        assert_eq!(number("0.0000000000000000001"), None);
        assert_eq!(
            number("0.000000000000000001"),
            Some(Number {
                mantissa: 1,
                scale: 18
            })
        );
    }

    #[test]
    fn end_positions_count_characters() {
        assert_eq!(end_position("SELECT"), Position { line: 1, column: 7 });
        assert_eq!(
            end_position("SELECT\n  甲"),
            Position { line: 2, column: 4 }
        );
    }
}
