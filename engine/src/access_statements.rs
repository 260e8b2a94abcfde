//! The SQL that manages users, roles and grants, in PostgreSQL's shape:
//!
//! - `CREATE ROLE name [WITH] [LOGIN | NOLOGIN] [SUPERUSER | NOSUPERUSER] [PASSWORD 'p']
//!   [IN ROLE r, ...]`, and `CREATE USER` (the same, with `LOGIN`);
//! - `ALTER ROLE | USER name [WITH] <the same options>`;
//! - `DROP ROLE | USER [IF EXISTS] name, ...`;
//! - `GRANT role, ... TO role, ...` and `REVOKE role, ... FROM role, ...`;
//! - `GRANT { SELECT | INSERT | UPDATE | DELETE | ALL } [, ...] ON cube.x | dim.y [, ...]
//!   TO role, ... [WHERE dimension <@ 'path' [OR ...]]` and the same `REVOKE ... FROM`. The
//!   `WHERE` clause is Quantatom's: it scopes the grant to dimension subtrees.
//!
//! A password is stored as a SCRAM-SHA-256 verifier (a verifier given as the password, as
//! psql's `\password` sends, is stored as it is); MD5 hashes are refused. Only administrators
//! run these statements, except that users may change their own password.

use datafusion::common::{DataFusionError, Result};
use datafusion::sql::sqlparser::ast::{
    Action, AlterRoleOperation, BinaryOperator, CreateRole, Expr as SqlExpr, GrantObjects, Grantee,
    GranteeName, Ident, ObjectName, ObjectType, Password, Privileges, RoleOption, Statement, Value,
    ValueWithSpan,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Span, Token, Tokenizer, Word};
use quantatom_table_providers::metadata::{
    AccessChange, Grant, Membership, MetadataError, MetadataStore, Privilege, Role, ScramVerifier,
    SessionAccess, SubtreeScope, change_access,
};
use quantatom_udfs::MemberPath;

/// A parsed role or grant statement, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessStatement {
    tag: &'static str,
    action: AccessAction,
}

/// What a statement does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AccessAction {
    /// `CREATE ROLE`: the role, the roles it joins, the roles that join it.
    Create {
        role: Role,
        if_not_exists: bool,
        in_roles: Vec<String>,
        members: Vec<String>,
    },
    /// `ALTER ROLE`: the options given.
    Alter { name: String, options: RoleOptions },
    /// `DROP ROLE`.
    Drop { names: Vec<String>, if_exists: bool },
    /// A change of memberships or grants.
    Changes(Vec<AccessChange>),
}

/// The role options a statement gives (`None`: left as they are).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RoleOptions {
    login: Option<bool>,
    admin: Option<bool>,
    /// `Some(None)`: `PASSWORD NULL`.
    password: Option<Option<String>>,
}

/// Whether `sql` holds, in any case, a word every role or grant statement has (`ROLE`, `USER`,
/// `GRANT` or `REVOKE`), maybe inside a longer word: without one it is none of them.
fn mentions_an_access_keyword(sql: &str) -> bool {
    sql.as_bytes().windows(4).any(|four| {
        four.eq_ignore_ascii_case(b"role")
            || four.eq_ignore_ascii_case(b"user")
            || four.eq_ignore_ascii_case(b"gran")
            || four.eq_ignore_ascii_case(b"revo")
    })
}

/// A statement this module does not take, or a malformed one.
fn invalid(message: impl Into<String>) -> DataFusionError {
    DataFusionError::External(Box::new(MetadataError::Invalid(message.into())))
}

/// A valid statement asking for what Quantatom does not do.
fn unsupported(message: impl Into<String>) -> DataFusionError {
    DataFusionError::External(Box::new(MetadataError::Unsupported(message.into())))
}

impl AccessStatement {
    /// Parses `sql` when it is a role or grant statement; `None` for any other statement.
    pub fn parse(sql: &str) -> Option<Result<Self>> {
        // Every query passes here: most are told apart without tokenizing them.
        if !mentions_an_access_keyword(sql) {
            return None;
        }
        let dialect = PostgreSqlDialect {};
        let mut tokens = Tokenizer::new(&dialect, sql).tokenize().ok()?;
        tokens.retain(|t| !matches!(t, Token::Whitespace(_)));
        while matches!(tokens.last(), Some(Token::SemiColon)) {
            tokens.pop();
        }
        // Several statements are split and come back one by one.
        if tokens.contains(&Token::SemiColon) {
            return None;
        }
        let keyword = |index: usize| match tokens.get(index) {
            Some(Token::Word(word)) => word.keyword,
            _ => Keyword::NoKeyword,
        };
        let tag = match (keyword(0), keyword(1)) {
            (Keyword::CREATE, Keyword::ROLE | Keyword::USER) => "CREATE ROLE",
            (Keyword::ALTER, Keyword::ROLE | Keyword::USER) => "ALTER ROLE",
            (Keyword::DROP, Keyword::ROLE | Keyword::USER) => "DROP ROLE",
            (Keyword::GRANT, _) => "GRANT",
            (Keyword::REVOKE, _) => "REVOKE",
            _ => return None,
        };
        let user = keyword(1) == Keyword::USER && tag != "GRANT" && tag != "REVOKE";
        if user {
            // `... USER` is `... ROLE` (with LOGIN when created).
            tokens[1] = Token::Word(Word {
                value: "ROLE".into(),
                quote_style: None,
                keyword: Keyword::ROLE,
            });
        }
        Some(Self::parse_tokens(tag, tokens, user).map(|action| Self { tag, action }))
    }

    fn parse_tokens(tag: &'static str, tokens: Vec<Token>, user: bool) -> Result<AccessAction> {
        let dialect = PostgreSqlDialect {};
        if matches!(tag, "GRANT" | "REVOKE") {
            return parse_grant(tag == "GRANT", tokens).map(AccessAction::Changes);
        }
        let statement = Parser::new(&dialect)
            .with_tokens(tokens)
            .parse_statement()
            .map_err(|e| DataFusionError::SQL(Box::new(e), None))?;
        match statement {
            Statement::CreateRole(create) => create_role(create, user),
            Statement::AlterRole { name, operation } => match operation {
                AlterRoleOperation::WithOptions { options } => Ok(AccessAction::Alter {
                    name: identifier(&name),
                    options: role_options(options)?,
                }),
                other => Err(unsupported(format!(
                    "ALTER ROLE ... {other} is not supported: roles take LOGIN, SUPERUSER and PASSWORD"
                ))),
            },
            Statement::Drop {
                object_type: ObjectType::Role,
                if_exists,
                names,
                ..
            } => Ok(AccessAction::Drop {
                names: names.iter().map(object_name).collect::<Result<_>>()?,
                if_exists,
            }),
            other => Err(invalid(format!("not a role statement: {other}"))),
        }
    }

    /// The command tag PostgreSQL answers with (`CREATE ROLE`, `GRANT`, ...).
    pub fn tag(&self) -> &'static str {
        self.tag
    }

    /// Runs the statement as the session `access` says (`None`: the engine's own session),
    /// committing the change to `store`.
    pub async fn execute(
        &self,
        store: &dyn MetadataStore,
        access: Option<&SessionAccess>,
    ) -> Result<()> {
        if let Some(access) = access
            && !self.own_password_change(access.user())
        {
            access.require_admin("manage roles and grants")?;
        }
        let (model, _) = store.access().await?;
        let changes = match &self.action {
            AccessAction::Create {
                role,
                if_not_exists,
                in_roles,
                members,
            } => {
                if *if_not_exists && model.roles.contains_key(&role.name) {
                    return Ok(());
                }
                let mut changes = vec![AccessChange::CreateRole(role.clone())];
                changes.extend(in_roles.iter().map(|r| {
                    AccessChange::GrantRole(Membership {
                        role: r.clone(),
                        member: role.name.clone(),
                    })
                }));
                changes.extend(members.iter().map(|m| {
                    AccessChange::GrantRole(Membership {
                        role: role.name.clone(),
                        member: m.clone(),
                    })
                }));
                changes
            }
            AccessAction::Alter { name, options } => {
                let Some(role) = model.roles.get(name) else {
                    return Err(MetadataError::NotFound(format!("role \"{name}\"")).into());
                };
                let mut role = role.clone();
                options.apply(&mut role);
                vec![AccessChange::AlterRole(role)]
            }
            AccessAction::Drop { names, if_exists } => names
                .iter()
                .filter(|name| !*if_exists || model.roles.contains_key(*name))
                .map(|name| AccessChange::DropRole(name.clone()))
                .collect(),
            AccessAction::Changes(changes) => changes.clone(),
        };
        change_access(store, changes).await?;
        Ok(())
    }

    /// Whether this is `ALTER ROLE user PASSWORD ...` of `user` itself and nothing else.
    fn own_password_change(&self, user: &str) -> bool {
        matches!(&self.action, AccessAction::Alter { name, options }
            if name == user
                && options.login.is_none()
                && options.admin.is_none()
                && options.password.is_some())
    }
}

/// What the statement changes, for the audit log: names, privileges and scopes, never a
/// password (only whether one is set).
impl std::fmt::Display for AccessStatement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.action {
            AccessAction::Create { role, .. } => write!(
                f,
                "CREATE ROLE {} (login: {}, administrator: {}, password: {})",
                role.name,
                role.can_login,
                role.is_admin,
                role.password_verifier.is_some()
            ),
            AccessAction::Alter { name, options } => write!(
                f,
                "ALTER ROLE {name} (login: {:?}, administrator: {:?}, password changed: {})",
                options.login,
                options.admin,
                options.password.is_some()
            ),
            AccessAction::Drop { names, .. } => write!(f, "DROP ROLE {}", names.join(", ")),
            AccessAction::Changes(changes) => {
                let changes: Vec<String> = changes
                    .iter()
                    .map(|change| match change {
                        AccessChange::GrantRole(m) => format!("GRANT {} TO {}", m.role, m.member),
                        AccessChange::RevokeRole(m) => {
                            format!("REVOKE {} FROM {}", m.role, m.member)
                        }
                        AccessChange::Grant(g) => format!("GRANT {}", grant_text(g)),
                        AccessChange::Revoke(g) => format!("REVOKE {}", grant_text(g)),
                        AccessChange::RevokeAll(g) => format!(
                            "REVOKE {} ON {} FROM {} (every scope)",
                            g.privilege.sql(),
                            g.object,
                            g.grantee
                        ),
                        AccessChange::CreateRole(role) | AccessChange::AlterRole(role) => {
                            format!("ROLE {}", role.name)
                        }
                        AccessChange::DropRole(name) => format!("DROP ROLE {name}"),
                    })
                    .collect();
                f.write_str(&changes.join("; "))
            }
        }
    }
}

/// `SELECT ON cube.finance TO ana [WHERE entity <@ 'Total.EMEA']`.
fn grant_text(grant: &Grant) -> String {
    let scope = grant
        .scope
        .as_ref()
        .map(|s| format!(" WHERE {} <@ '{}'", s.dimension, s.path))
        .unwrap_or_default();
    format!(
        "{} ON {} TO {}{scope}",
        grant.privilege.sql(),
        grant.object,
        grant.grantee
    )
}

impl RoleOptions {
    fn apply(&self, role: &mut Role) {
        if let Some(login) = self.login {
            role.can_login = login;
        }
        if let Some(admin) = self.admin {
            role.is_admin = admin;
        }
        if let Some(password) = &self.password {
            role.password_verifier = password.clone();
        }
    }
}

fn create_role(create: CreateRole, user: bool) -> Result<AccessAction> {
    let [name] = create.names.as_slice() else {
        return Err(unsupported("CREATE ROLE creates one role at a time"));
    };
    if create.create_db.is_some()
        || create.create_role.is_some()
        || create.replication.is_some()
        || create.bypassrls.is_some()
        || create.connection_limit.is_some()
        || create.valid_until.is_some()
        || !create.admin.is_empty()
        || !create.in_group.is_empty()
    {
        return Err(unsupported(
            "roles take LOGIN, SUPERUSER, PASSWORD, IN ROLE and ROLE/USER options only",
        ));
    }
    let options = RoleOptions {
        login: create.login.or(Some(user)),
        admin: create.superuser,
        password: create.password.map(password_verifier).transpose()?,
    };
    let mut role = Role {
        name: object_name(name)?,
        can_login: false,
        is_admin: false,
        password_verifier: None,
    };
    options.apply(&mut role);
    Ok(AccessAction::Create {
        role,
        if_not_exists: create.if_not_exists,
        in_roles: create.in_role.iter().map(identifier).collect(),
        members: create
            .role
            .iter()
            .chain(&create.user)
            .map(identifier)
            .collect(),
    })
}

fn role_options(options: Vec<RoleOption>) -> Result<RoleOptions> {
    let mut parsed = RoleOptions::default();
    for option in options {
        match option {
            RoleOption::Login(login) => parsed.login = Some(login),
            RoleOption::SuperUser(admin) => parsed.admin = Some(admin),
            RoleOption::Password(password) => parsed.password = Some(password_verifier(password)?),
            other => {
                return Err(unsupported(format!(
                    "role option {other} is not supported: roles take LOGIN, SUPERUSER and PASSWORD"
                )));
            }
        }
    }
    Ok(parsed)
}

/// The verifier to store for a `PASSWORD` clause: a SCRAM verifier as given, else the
/// password hashed; `None` for `PASSWORD NULL`.
fn password_verifier(password: Password) -> Result<Option<String>> {
    let text = match password {
        Password::NullPassword => return Ok(None),
        Password::Password(SqlExpr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(text),
            ..
        })) => text,
        Password::Password(_) => return Err(invalid("a password is a string literal")),
    };
    if ScramVerifier::parse(&text).is_some() {
        return Ok(Some(text));
    }
    if text.len() == 35 && text.starts_with("md5") {
        return Err(unsupported(
            "MD5 password hashes are not accepted: give the password, or a SCRAM-SHA-256 verifier",
        ));
    }
    if text.is_empty() {
        return Err(invalid("a password must not be empty"));
    }
    Ok(Some(ScramVerifier::hash(&text)))
}

/// A one-part name (a role's).
fn object_name(name: &ObjectName) -> Result<String> {
    match name.0.as_slice() {
        [part] => part
            .as_ident()
            .map(identifier)
            .ok_or_else(|| invalid(format!("{name} is not a role name"))),
        _ => Err(invalid(format!("{name} is not a role name"))),
    }
}

/// An identifier as PostgreSQL reads it: folded to lower case unless quoted.
fn identifier(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// `GRANT`/`REVOKE` (`granting` says which) of roles or of privileges, with Quantatom's
/// `WHERE` scope.
fn parse_grant(granting: bool, tokens: Vec<Token>) -> Result<Vec<AccessChange>> {
    let dialect = PostgreSqlDialect {};
    let is_keyword = |t: &Token, k: Keyword| matches!(t, Token::Word(w) if w.keyword == k);
    let where_at = tokens.iter().position(|t| is_keyword(t, Keyword::WHERE));
    let (head, scope) = match where_at {
        Some(at) => (tokens[..at].to_vec(), Some(tokens[at + 1..].to_vec())),
        None => (tokens, None),
    };
    if !head.iter().any(|t| is_keyword(t, Keyword::ON)) {
        if scope.is_some() {
            return Err(invalid("a role grant takes no WHERE scope"));
        }
        return parse_role_grant(granting, &head);
    }
    let mut parser = Parser::new(&dialect).with_tokens(head);
    let statement = parser
        .parse_statement()
        .map_err(|e| DataFusionError::SQL(Box::new(e), None))?;
    let (privileges, objects, grantees) = match statement {
        Statement::Grant(grant) => {
            if grant.with_grant_option {
                return Err(unsupported("WITH GRANT OPTION: only administrators grant"));
            }
            (grant.privileges, grant.objects, grant.grantees)
        }
        Statement::Revoke(revoke) => (revoke.privileges, revoke.objects, revoke.grantees),
        other => return Err(invalid(format!("not a grant: {other}"))),
    };
    let privileges = match privileges {
        Privileges::All { .. } => vec![
            Privilege::Select,
            Privilege::Insert,
            Privilege::Update,
            Privilege::Delete,
        ],
        Privileges::Actions(actions) => actions
            .iter()
            .map(|action| match action {
                Action::Select { columns: None } => Ok(Privilege::Select),
                Action::Insert { columns: None } => Ok(Privilege::Insert),
                Action::Update { columns: None } => Ok(Privilege::Update),
                Action::Delete => Ok(Privilege::Delete),
                other => Err(unsupported(format!(
                    "privilege {other} is not supported: grants are of SELECT, INSERT, UPDATE and DELETE on whole cubes and dimensions"
                ))),
            })
            .collect::<Result<_>>()?,
    };
    let objects = match objects {
        Some(GrantObjects::Tables(tables)) => tables
            .iter()
            .map(|t| t.to_string().to_lowercase())
            .collect::<Vec<_>>(),
        _ => {
            return Err(unsupported(
                "grants are on cubes and dimensions by name: ON cube.<name> or dim.<name>",
            ));
        }
    };
    let grantees = grantees
        .iter()
        .map(grantee_name)
        .collect::<Result<Vec<_>>>()?;
    let scopes: Vec<Option<SubtreeScope>> = match scope {
        None => vec![None],
        Some(tokens) => {
            let mut parser = Parser::new(&dialect).with_tokens(tokens);
            let expr = parser
                .parse_expr()
                .map_err(|e| DataFusionError::SQL(Box::new(e), None))?;
            if parser.peek_token().token != Token::EOF {
                return Err(invalid(
                    "a grant's scope is dimension <@ 'path' [OR dimension <@ 'path' ...]",
                ));
            }
            let mut scopes = Vec::new();
            collect_scopes(&expr, &mut scopes)?;
            scopes.into_iter().map(Some).collect()
        }
    };
    let mut changes = Vec::new();
    for grantee in &grantees {
        for object in &objects {
            for privilege in &privileges {
                let grant = |scope: &Option<SubtreeScope>| Grant {
                    grantee: grantee.clone(),
                    privilege: *privilege,
                    object: object.clone(),
                    scope: scope.clone(),
                };
                match (granting, scopes.as_slice()) {
                    (true, _) => {
                        changes.extend(scopes.iter().map(|s| AccessChange::Grant(grant(s))))
                    }
                    // An unscoped REVOKE takes the privilege away, scoped or not.
                    (false, [None]) => changes.push(AccessChange::RevokeAll(grant(&None))),
                    (false, _) => {
                        changes.extend(scopes.iter().map(|s| AccessChange::Revoke(grant(s))))
                    }
                }
            }
        }
    }
    Ok(changes)
}

/// `dimension <@ 'path'` terms joined by `OR`.
fn collect_scopes(expr: &SqlExpr, scopes: &mut Vec<SubtreeScope>) -> Result<()> {
    match expr {
        SqlExpr::Nested(inner) => collect_scopes(inner, scopes),
        SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::Or,
            right,
        } => {
            collect_scopes(left, scopes)?;
            collect_scopes(right, scopes)
        }
        SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::ArrowAt,
            right,
        } => match (left.as_ref(), right.as_ref()) {
            (
                SqlExpr::Identifier(dimension),
                SqlExpr::Value(ValueWithSpan {
                    value: Value::SingleQuotedString(path),
                    ..
                }),
            ) => {
                let path = MemberPath::parse(path).map_err(|e| invalid(e.to_string()))?;
                scopes.push(SubtreeScope {
                    dimension: dimension.value.to_lowercase(),
                    path,
                });
                Ok(())
            }
            _ => Err(invalid(format!(
                "a grant's scope is dimension <@ 'path', not {expr}"
            ))),
        },
        other => Err(invalid(format!(
            "a grant's scope is dimension <@ 'path' [OR ...], not {other}"
        ))),
    }
}

/// `GRANT role, ... TO member, ...` or `REVOKE role, ... FROM member, ...`.
fn parse_role_grant(granting: bool, tokens: &[Token]) -> Result<Vec<AccessChange>> {
    let separator = if granting { Keyword::TO } else { Keyword::FROM };
    let names = |tokens: &[Token]| -> Result<Vec<String>> {
        let mut names = Vec::new();
        for (index, token) in tokens.iter().enumerate() {
            match (index % 2, token) {
                (0, Token::Word(word)) => names.push(identifier(&word.to_ident(Span::empty()))),
                (1, Token::Comma) => {}
                _ => return Err(invalid(format!("unexpected {token} in a role grant"))),
            }
        }
        if names.is_empty() || tokens.len().is_multiple_of(2) {
            return Err(invalid("a role grant names roles: GRANT role TO member"));
        }
        Ok(names)
    };
    let at = tokens
        .iter()
        .position(|t| matches!(t, Token::Word(w) if w.keyword == separator))
        .ok_or_else(|| invalid("a role grant names roles: GRANT role TO member"))?;
    let roles = names(&tokens[1..at])?;
    let members = names(&tokens[at + 1..])?;
    let mut changes = Vec::new();
    for role in &roles {
        for member in &members {
            let membership = Membership {
                role: role.clone(),
                member: member.clone(),
            };
            changes.push(if granting {
                AccessChange::GrantRole(membership)
            } else {
                AccessChange::RevokeRole(membership)
            });
        }
    }
    Ok(changes)
}

/// A grantee's name; `PUBLIC` and other kinds are not supported.
fn grantee_name(grantee: &Grantee) -> Result<String> {
    match &grantee.name {
        Some(GranteeName::ObjectName(name)) => object_name(name),
        _ => Err(unsupported(format!(
            "grants go to roles by name, not {grantee}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> AccessAction {
        AccessStatement::parse(sql)
            .expect("a role statement")
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .action
    }

    #[test]
    fn role_statements_parse_as_postgresql_writes_them() {
        assert!(AccessStatement::parse("SELECT 1").is_none());
        assert!(AccessStatement::parse("CREATE TABLE t (a int)").is_none());
        let AccessAction::Create { role, .. } = parsed("CREATE USER ana WITH PASSWORD 'pw';")
        else {
            panic!("a create");
        };
        assert!(role.can_login && !role.is_admin && role.name == "ana");
        let verifier = role.password_verifier.expect("a verifier");
        assert!(ScramVerifier::parse(&verifier).unwrap().matches("pw"));
        let AccessAction::Create { role, in_roles, .. } =
            parsed("create role boss superuser in role planners")
        else {
            panic!("a create");
        };
        assert!(!role.can_login && role.is_admin && in_roles == ["planners"]);
        assert!(matches!(
            parsed("ALTER USER ana PASSWORD NULL"),
            AccessAction::Alter {
                options: RoleOptions {
                    password: Some(None),
                    ..
                },
                ..
            }
        ));
        assert!(
            matches!(parsed("DROP USER IF EXISTS ana, bo"), AccessAction::Drop { if_exists: true, names } if names == ["ana", "bo"])
        );
        let md5 =
            AccessStatement::parse("CREATE USER x PASSWORD 'md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'");
        assert!(md5.unwrap().is_err());
    }

    #[test]
    fn grants_take_scopes() {
        let AccessAction::Changes(changes) = parsed(
            "GRANT SELECT, UPDATE ON cube.finance TO ana WHERE entity <@ 'Total.EMEA' OR entity <@ 'Total.APAC'",
        ) else {
            panic!("changes");
        };
        assert_eq!(changes.len(), 4);
        assert!(
            changes
                .iter()
                .all(|c| matches!(c, AccessChange::Grant(Grant { scope: Some(_), .. })))
        );
        let AccessAction::Changes(changes) = parsed("REVOKE ALL ON dim.entity FROM ana") else {
            panic!("changes");
        };
        assert_eq!(changes.len(), 4);
        assert!(matches!(&changes[0], AccessChange::RevokeAll(g) if g.object == "dim.entity"));
        let AccessAction::Changes(changes) = parsed("GRANT planners TO ana, bo") else {
            panic!("changes");
        };
        assert_eq!(changes.len(), 2);
        let bad = AccessStatement::parse("GRANT SELECT ON cube.finance TO ana WHERE entity = 'DE'");
        assert!(bad.unwrap().is_err());
        let bad = AccessStatement::parse("GRANT SELECT ON cube.finance TO PUBLIC");
        assert!(bad.unwrap().is_err());
    }
}
