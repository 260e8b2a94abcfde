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
use crate::mdf::maintenance_sql::MaintenanceTable;
use crate::mdf::time_travel::{CubeAt, CubeHistory};
use crate::metadata::{DimensionTable, MetadataError, Privilege, Reach, SessionAccess};

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
        /// Columns a reader with a scoped grant sees as NULL: they may tell of cells outside
        /// the scope (the text of a statement that changed cells inside and outside it).
        withheld: Vec<String>,
    },
    /// Privileges on `object` reaching every cell: the table shows or changes what cannot be
    /// narrowed to a scope (a cube's commit history with its statements, `mdf_spread`,
    /// `mdf_copy`).
    Whole {
        /// The object.
        object: String,
        /// The privileges, each of which must reach every cell.
        privileges: Vec<Privilege>,
        /// What reads it, for the error.
        what: String,
    },
    /// Only administrators use it (`audit.ledger`: every change of every cube; compaction and
    /// vacuum).
    AdminOnly {
        /// What it is, for the error.
        what: String,
    },
}

impl AccessTarget {
    /// 42501 unless `access` may use the table at all: a `Whole` target's privileges each
    /// reach every cell, an `AdminOnly` target is used by an administrator. `Rows` targets
    /// pass: their scans are narrowed instead.
    pub fn check(&self, access: &SessionAccess) -> Result<(), MetadataError> {
        match self {
            AccessTarget::Rows { .. } => Ok(()),
            AccessTarget::AdminOnly { what } => access.require_admin(what),
            AccessTarget::Whole {
                object,
                privileges,
                what,
            } => {
                for privilege in privileges {
                    if let Reach::Members(_) = access.require(object, *privilege)? {
                        return Err(MetadataError::PermissionDenied(format!(
                            "{what} covers all cells of {object}: it needs a {} grant on it without a scope",
                            privilege.sql()
                        )));
                    }
                }
                Ok(())
            }
        }
    }
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
            withheld: Vec::new(),
        }
    };
    if let Some(cube) = provider.downcast_ref::<MdfTable>() {
        Some(cube_rows(cube))
    } else if let Some(at) = provider.downcast_ref::<CubeAt>() {
        Some(cube_rows(at.cube()))
    } else if let Some(dimension) = provider.downcast_ref::<DimensionTable>() {
        // An alternate hierarchy's codes are its dimension's members.
        let members_of = dimension.members_of().to_owned();
        Some(AccessTarget::Rows {
            object: format!("dim.{}", dimension.dimension()),
            coordinates: vec![(members_of, Coordinate::Column("code".into()))],
            withheld: Vec::new(),
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
                withheld: vec!["statement".into()],
            },
            None => AccessTarget::AdminOnly {
                what: "read audit.ledger".into(),
            },
        })
    } else if let Some(history) = provider.downcast_ref::<ComputedTable<CubeHistory>>() {
        Some(AccessTarget::Whole {
            object: format!("cube.{}", history.0.cube().definition().name),
            privileges: vec![Privilege::Select],
            what: "mdf_history".into(),
        })
    } else {
        provider
            .downcast_ref::<MaintenanceTable>()
            .map(|call| call.0.needs.clone())
    }
}
