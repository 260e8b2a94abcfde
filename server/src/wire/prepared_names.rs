//! `DEALLOCATE ALL` (and the deallocation `DISCARD ALL` does), which forgets every statement a
//! connection prepared, as PostgreSQL does. psycopg sends it after a failed transaction
//! when it has prepared statements; DataFusion would look for a statement named `all`.
//!
//! pgwire's statement store can forget a statement by name but cannot list them, and
//! DataFusion's session keeps the statements of SQL `PREPARE` to itself, so a connection
//! remembers the names it prepared, in [`PreparedNames`].

use std::collections::BTreeSet;
use std::sync::Mutex;

use datafusion::sql::sqlparser::ast::{DataType, DiscardObject, Ident, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// What a query text asks of a connection's prepared statements.
#[derive(Debug, PartialEq)]
pub(crate) enum PreparedStatements {
    /// `DEALLOCATE ALL` (or `DEALLOCATE PREPARE ALL`): forget every one.
    DeallocateAll,
    /// `DISCARD ALL`: forget every one, then reset the session as the settings hook does.
    DiscardAll,
    /// SQL `PREPARE name [(data_types)] AS statement`: one more, by the name as written.
    Prepare {
        name: Ident,
        data_types: Vec<DataType>,
        statement: Box<Statement>,
    },
    /// `DEALLOCATE name`: forget one, which may have been prepared through the protocol
    /// (psycopg deallocates its statements so when it has prepared too many).
    Deallocate(Ident),
    /// `EXECUTE name [(parameters)]`: run one prepared with SQL `PREPARE`.
    Execute(Box<Statement>),
}

impl PreparedStatements {
    /// What `query` asks, when it is one of these statements; `None` for anything else. Only
    /// texts that start with one of their keywords are parsed.
    pub(crate) fn parse(query: &str) -> Option<Self> {
        let start = query.trim_start();
        let keyword = start.get(..7)?;
        if !["dealloc", "discard", "prepare", "execute"]
            .iter()
            .any(|word| keyword.eq_ignore_ascii_case(word))
        {
            return None;
        }
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, start).ok()?;
        let [statement] = statements.as_slice() else {
            return None;
        };
        match statement {
            Statement::Deallocate { name, .. }
                if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") =>
            {
                Some(Self::DeallocateAll)
            }
            Statement::Discard {
                object_type: DiscardObject::ALL,
            } => Some(Self::DiscardAll),
            Statement::Prepare {
                name,
                data_types,
                statement,
            } => Some(Self::Prepare {
                name: name.clone(),
                data_types: data_types.clone(),
                statement: statement.clone(),
            }),
            Statement::Deallocate { name, .. } => Some(Self::Deallocate(name.clone())),
            Statement::Execute { .. } => Some(Self::Execute(Box::new(statement.clone()))),
            _ => None,
        }
    }
}

/// The names of the statements a connection prepared: through the protocol (Parse) and with
/// SQL `PREPARE`, which are kept apart.
#[derive(Debug, Default)]
pub(crate) struct PreparedNames {
    protocol: Mutex<BTreeSet<String>>,
    sql: Mutex<BTreeSet<String>>,
}

impl PreparedNames {
    /// A statement stored under `name` by a Parse (the unnamed one is not kept).
    pub(crate) fn parsed(&self, name: &str) {
        if !name.is_empty() {
            self.protocol
                .lock()
                .expect("prepared names poisoned")
                .insert(name.to_owned());
        }
    }

    /// The statement a Parse stored under `name` was closed (a Close message).
    pub(crate) fn closed(&self, name: &str) {
        self.protocol
            .lock()
            .expect("prepared names poisoned")
            .remove(name);
    }

    /// Forgets the statement a Parse stored under the name `DEALLOCATE` wrote as `name`
    /// (unquoted, in lower case, as PostgreSQL folds it): that stored name, when there was one.
    pub(crate) fn forget_parsed(&self, name: &Ident) -> Option<String> {
        let name = match name.quote_style {
            Some(_) => name.value.clone(),
            None => name.value.to_lowercase(),
        };
        let mut parsed = self.protocol.lock().expect("prepared names poisoned");
        parsed.remove(&name).then_some(name)
    }

    /// A statement prepared by SQL `PREPARE name`, with `name` as written (quoted or not).
    pub(crate) fn prepared(&self, name: &Ident) {
        self.sql
            .lock()
            .expect("prepared names poisoned")
            .insert(name.to_string());
    }

    /// Every name remembered, forgotten: those stored by Parse, and the SQL statements, as
    /// `DEALLOCATE` takes their names (a statement deallocated since is among them).
    pub(crate) fn take_all(&self) -> (Vec<String>, Vec<String>) {
        let take = |names: &Mutex<BTreeSet<String>>| {
            std::mem::take(&mut *names.lock().expect("prepared names poisoned"))
                .into_iter()
                .collect()
        };
        (take(&self.protocol), take(&self.sql))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_about_prepared_statements_are_recognised() {
        for all in [
            "DEALLOCATE ALL",
            "  deallocate prepare all;",
            "DeAllocate All",
        ] {
            assert_eq!(
                PreparedStatements::parse(all),
                Some(PreparedStatements::DeallocateAll),
                "{all}"
            );
        }
        assert_eq!(
            PreparedStatements::parse("DISCARD ALL"),
            Some(PreparedStatements::DiscardAll)
        );
        let Some(PreparedStatements::Prepare {
            name, data_types, ..
        }) = PreparedStatements::parse("PREPARE \"Q\" (int) AS SELECT $1")
        else {
            panic!("PREPARE not recognised");
        };
        assert_eq!(
            (name, data_types),
            (Ident::with_quote('"', "Q"), vec![DataType::Int(None)])
        );
        // A statement named "all", and other statements.
        for other in ["DISCARD PLANS", "SELECT 1", "", "DEALLOCATE ALL; SELECT 1"] {
            assert_eq!(PreparedStatements::parse(other), None, "{other}");
        }
    }

    #[test]
    fn deallocate_names_one_statement() {
        assert_eq!(
            PreparedStatements::parse("DEALLOCATE \"all\""),
            Some(PreparedStatements::Deallocate(Ident::with_quote(
                '"', "all"
            )))
        );
        assert_eq!(
            PreparedStatements::parse("deallocate prepare _pg3_0"),
            Some(PreparedStatements::Deallocate(Ident::new("_pg3_0")))
        );
        let names = PreparedNames::default();
        names.parsed("_pg3_0");
        names.parsed("S_1");
        assert_eq!(
            names.forget_parsed(&Ident::new("_PG3_0")).as_deref(),
            Some("_pg3_0")
        );
        assert_eq!(names.forget_parsed(&Ident::new("_pg3_0")), None);
        assert_eq!(names.forget_parsed(&Ident::new("S_1")), None);
        names.parsed("S_2");
        names.closed("S_2");
        assert_eq!(names.forget_parsed(&Ident::new("S_2")), None);
        assert_eq!(
            names
                .forget_parsed(&Ident::with_quote('"', "S_1"))
                .as_deref(),
            Some("S_1")
        );
    }

    #[test]
    fn names_are_taken_once() {
        let names = PreparedNames::default();
        names.parsed("_pg3_0");
        names.parsed("");
        names.prepared(&Ident::new("q"));
        assert_eq!(
            names.take_all(),
            (vec!["_pg3_0".to_owned()], vec!["q".to_owned()])
        );
        assert_eq!(names.take_all(), (vec![], vec![]));
    }
}
