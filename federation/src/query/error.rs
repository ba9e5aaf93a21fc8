//! The query language's one error type: what was refused, at which line and column of the SQL,
//! and what would be accepted instead.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A place in the SQL text: 1-based line and 1-based column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a query was refused. Every variant names the offending text; `position` is where it starts
/// in the SQL when the parser could tell.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The text is not SQL the parser can read.
    #[error("{}syntax error: {message}", prefix(*position))]
    Syntax {
        position: Option<Position>,
        message: String,
    },
    /// Valid SQL that the query language does not accept: a clause, a construct, a function.
    #[error("{}not supported: {message}", prefix(*position))]
    Unsupported {
        position: Option<Position>,
        message: String,
    },
    /// A table or column the data standard does not have.
    #[error("{}unknown name: {message}", prefix(*position))]
    Unknown {
        position: Option<Position>,
        message: String,
    },
    /// A personal column used anywhere but as the argument of `age`/`age_band`.
    #[error(
        "{}personal column: `{column}` identifies people and may not be selected, grouped, \
         filtered or aggregated (only birth_date, and only inside age() or age_band())",
        prefix(*position)
    )]
    Personal {
        position: Option<Position>,
        column: String,
    },
    /// A value or operand of the wrong type for where it is used.
    #[error("{}type mismatch: {message}", prefix(*position))]
    Type {
        position: Option<Position>,
        message: String,
    },
}

impl QueryError {
    /// Where in the SQL the problem starts, when known.
    pub fn position(&self) -> Option<Position> {
        match self {
            QueryError::Syntax { position, .. }
            | QueryError::Unsupported { position, .. }
            | QueryError::Unknown { position, .. }
            | QueryError::Personal { position, .. }
            | QueryError::Type { position, .. } => *position,
        }
    }
}

fn prefix(position: Option<Position>) -> String {
    position.map_or_else(String::new, |position| format!("{position}: "))
}
