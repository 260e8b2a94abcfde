//! `pg_catalog.pg_roles` and `pg_auth_members` over the metadata store's roles and
//! memberships, so that `\du` and tools listing roles see Quantatom's.
//!
//! The tables keep datafusion-pg-catalog's columns (PostgreSQL 16's); a role's `oid` is
//! derived from its name, so it is the same in every session and on every replica, and
//! `pg_auth_members` joins `pg_roles` on it as in PostgreSQL. Passwords show as `********`, as
//! `pg_roles` shows them.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Result, ScalarValue};
use quantatom_engine::computed::ComputedRows;
use quantatom_engine::metadata::{AccessModel, MetadataStore};

/// `pg_roles`.
pub(crate) const PG_ROLES: &str = "pg_roles";
/// `pg_auth_members`.
pub(crate) const PG_AUTH_MEMBERS: &str = "pg_auth_members";

/// The `oid` of the role `name`: a 32-bit FNV-1a hash of it, above PostgreSQL's built-in oids.
pub(crate) fn role_oid(name: &str) -> i64 {
    let hash = name.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    i64::from(0x4000_0000 | (hash & 0x3fff_ffff))
}

/// `pg_roles` or `pg_auth_members`, read from the store at every scan (a
/// [`quantatom_engine::computed::ComputedTable`]).
#[derive(Debug)]
pub(crate) struct RolesTable {
    store: Arc<dyn MetadataStore>,
    /// Which table: [`PG_ROLES`] or [`PG_AUTH_MEMBERS`].
    name: &'static str,
    schema: SchemaRef,
}

impl RolesTable {
    /// The table `name` with `schema` (datafusion-pg-catalog's columns for it).
    pub(crate) fn new(
        store: Arc<dyn MetadataStore>,
        name: &'static str,
        schema: SchemaRef,
    ) -> Self {
        Self {
            store,
            name,
            schema,
        }
    }

    /// The value of `column` in each row, or `None` for a column left NULL.
    fn column(&self, access: &AccessModel, column: &str) -> Option<Vec<ScalarValue>> {
        let text = |s: &str| ScalarValue::Utf8(Some(s.to_owned()));
        let flag = |b: bool| ScalarValue::Boolean(Some(b));
        let oid = |name: &str| ScalarValue::Int64(Some(role_oid(name)));
        if self.name == PG_ROLES {
            let roles = access.roles.values();
            return Some(match column {
                "oid" => roles.map(|r| oid(&r.name)).collect(),
                "rolname" => roles.map(|r| text(&r.name)).collect(),
                "rolsuper" | "rolcreaterole" | "rolbypassrls" => {
                    roles.map(|r| flag(r.is_admin)).collect()
                }
                "rolinherit" => roles.map(|_| flag(true)).collect(),
                "rolcreatedb" | "rolreplication" => roles.map(|_| flag(false)).collect(),
                "rolcanlogin" => roles.map(|r| flag(r.can_login)).collect(),
                "rolconnlimit" => roles.map(|_| ScalarValue::Int64(Some(-1))).collect(),
                "rolpassword" => roles.map(|_| text("********")).collect(),
                _ => return None,
            });
        }
        let memberships = access.memberships.iter();
        Some(match column {
            "oid" => memberships
                .map(|m| oid(&format!("{}\u{0}{}", m.role, m.member)))
                .collect(),
            "roleid" => memberships.map(|m| oid(&m.role)).collect(),
            "member" => memberships.map(|m| oid(&m.member)).collect(),
            "grantor" => memberships.map(|_| ScalarValue::Int64(Some(10))).collect(),
            "admin_option" => memberships.map(|_| flag(false)).collect(),
            "inherit_option" | "set_option" => memberships.map(|_| flag(true)).collect(),
            _ => return None,
        })
    }

    fn rows_of(&self, access: &AccessModel) -> Result<RecordBatch> {
        let rows = match self.name {
            PG_ROLES => access.roles.len(),
            _ => access.memberships.len(),
        };
        let columns = self
            .schema
            .fields()
            .iter()
            .map(|field| match self.column(access, field.name()) {
                Some(values) if !values.is_empty() => Ok(cast(
                    &ScalarValue::iter_to_array(values)?,
                    field.data_type(),
                )?),
                _ => Ok(new_null_array(field.data_type(), rows)),
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

#[async_trait]
impl ComputedRows for RolesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn rows(&self) -> Result<RecordBatch> {
        let (access, _) = self.store.access().await?;
        self.rows_of(&access)
    }
}
