//! What access control needs to know about a table a plan scans: which object's grants
//! govern it, and where each row's members are, so that a scoped grant can narrow the scan.
//!
//! The engine's access rule asks [`access_target`] about every scan; the tables this crate
//! provides answer here, in one place. A table not listed (`pg_catalog`, `system`,
//! `information_schema`, users' tables in `public`) is not governed by grants.

use datafusion::catalog::TableProvider;

use crate::computed::ComputedTable;
use crate::ledger::audit::LedgerTable;
use crate::mdf::MdfTable;
use crate::mdf::time_travel::{CubeAt, CubeHistory};
use crate::metadata::{DimensionTable, HIERARCHY_SEPARATOR};

/// Where a row's member of one dimension is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coordinate {
    /// In this column.
    Column(String),
    /// In this `|`-separated part (from 1) of this column: a ledger row's `item`.
    Part {
        /// The column.
        column: String,
        /// The part, from 1.
        part: i64,
    },
}

/// What reading a table needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessTarget {
    /// SELECT on `object`; a scoped grant keeps the rows whose members are in scope.
    Rows {
        /// The object whose grants govern the table (`cube.finance`, `dim.entity`).
        object: String,
        /// Each dimension's member in a row.
        coordinates: Vec<(String, Coordinate)>,
    },
    /// SELECT on `object` reaching every cell: the table shows what cannot be narrowed to
    /// a scope (a cube's commit history with its statements).
    Whole {
        /// The object.
        object: String,
    },
    /// Only administrators read it (`audit.ledger`: every change of every cube).
    AdminOnly {
        /// What it is, for the error.
        what: String,
    },
}

/// What reading `provider` needs; `None` when grants do not govern it.
pub fn access_target(provider: &dyn TableProvider) -> Option<AccessTarget> {
    let cube_rows = |cube: &MdfTable| {
        let definition = cube.definition();
        AccessTarget::Rows {
            object: format!("cube.{}", definition.name),
            coordinates: definition
                .dimensions
                .iter()
                .map(|d| (d.clone(), Coordinate::Column(d.clone())))
                .collect(),
        }
    };
    if let Some(cube) = provider.downcast_ref::<MdfTable>() {
        Some(cube_rows(cube))
    } else if let Some(at) = provider.downcast_ref::<CubeAt>() {
        Some(cube_rows(at.cube()))
    } else if let Some(dimension) = provider.downcast_ref::<DimensionTable>() {
        // An alternate hierarchy's codes are its dimension's members.
        let name = dimension.dimension();
        let members_of = name.split(HIERARCHY_SEPARATOR).next().unwrap_or(name);
        Some(AccessTarget::Rows {
            object: format!("dim.{name}"),
            coordinates: vec![(members_of.to_owned(), Coordinate::Column("code".into()))],
        })
    } else if let Some(ledger) = provider.downcast_ref::<LedgerTable>() {
        Some(match &ledger.of_cube {
            Some(definition) => AccessTarget::Rows {
                object: format!("cube.{}", definition.name),
                coordinates: (1..)
                    .zip(&definition.dimensions)
                    .map(|(part, d)| {
                        let column = "item".to_owned();
                        (d.clone(), Coordinate::Part { column, part })
                    })
                    .collect(),
            },
            None => AccessTarget::AdminOnly {
                what: "read audit.ledger".into(),
            },
        })
    } else {
        provider
            .downcast_ref::<ComputedTable<CubeHistory>>()
            .map(|history| AccessTarget::Whole {
                object: format!("cube.{}", history.0.cube().definition().name),
            })
    }
}
