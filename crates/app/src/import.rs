//! Importing users from CSV (`POST /v1/tenants/{tenant}/users/import`): each row becomes the bulk
//! operations that make the tenant hold the person with their roles, planned first (a dry run
//! shows the plan and changes nothing), then carried out by [`People::bulk`].
//!
//! Columns (a header row names them, in any order): `email` (required), `first_name`,
//! `last_name`, `roles` (separated by `;` or `|`; none: the tenant's default role), `phone`
//! (international form) and `attributes` (`name=value` pairs separated by `;`, each value in the
//! attribute's type: `department=Sales;employee_no=42;remote=true`; `name=` clears one). A new
//! address becomes a user created with those roles, phone number and attribute values (active,
//! no email sent); an existing user gets the roles they lack here and the row's attribute
//! values. An existing user's phone number is theirs: a row giving another one is invalid.

use std::collections::{BTreeMap, BTreeSet};

use idstream_domain::access::Action;
use idstream_domain::attributes::{self, AttributeDefinition, Editor};
use idstream_domain::user::{self, NewUser, User, UserCommand, UserError, normalize_email};
use idstream_domain::{RoleName, TenantId, UserId};
use serde_json::Value;

use crate::core::internal;
use crate::people::{BulkOperation, BulkOutcome, MAX_BULK_OPERATIONS};
use crate::policy::Caller;
use crate::{AppError, NewUserRequest, People};

/// What importing one row does.
#[derive(Debug, Clone)]
pub enum RowPlan {
    /// A new user with these roles.
    Create { roles: Vec<RoleName> },
    /// An existing user gets the roles they lack here.
    AssignRoles { user: UserId, roles: Vec<RoleName> },
    /// An existing user gets the roles they lack here (perhaps none) and the row's attribute
    /// values, some of which differ from theirs.
    Update { user: UserId, roles: Vec<RoleName> },
    /// The user exists and holds every role here already.
    Unchanged { user: UserId },
    /// The row cannot be imported: why.
    Invalid(AppError),
}

/// One row of an import: its number (the header is row 1), the address, and what it does (or,
/// once carried out, did: each operation's outcome).
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub row: usize,
    pub email: String,
    pub plan: RowPlan,
    /// The attribute values the row sets (`None`: clears), as read from its `attributes` cell.
    pub attributes: BTreeMap<String, Option<Value>>,
    pub outcomes: Vec<BulkOutcome>,
}

/// A row as read from the file.
struct Parsed {
    row: usize,
    email: String,
    first_name: String,
    last_name: String,
    roles: Vec<String>,
    phone: String,
    attributes: String,
}

fn invalid(detail: impl Into<String>) -> AppError {
    AppError::InvalidQuery(detail.into())
}

/// Reads the CSV: a header, then up to [`MAX_BULK_OPERATIONS`] rows.
fn parse(text: &str) -> Result<Vec<Parsed>, AppError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| invalid(format!("the CSV header: {e}")))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    for header in headers.iter() {
        let known = [
            "email",
            "first_name",
            "last_name",
            "roles",
            "phone",
            "attributes",
        ];
        if !known.iter().any(|k| header.eq_ignore_ascii_case(k)) {
            return Err(invalid(format!(
                "unknown CSV column `{header}` (known: {})",
                known.join(", ")
            )));
        }
    }
    let email = column("email").ok_or_else(|| invalid("the CSV has no `email` column"))?;
    let (first, last, roles) = (column("first_name"), column("last_name"), column("roles"));
    let (phone, attributes) = (column("phone"), column("attributes"));
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 2;
        let record = record.map_err(|e| invalid(format!("CSV row {row}: {e}")))?;
        if rows.len() == MAX_BULK_OPERATIONS {
            return Err(invalid(format!(
                "at most {MAX_BULK_OPERATIONS} rows per import"
            )));
        }
        let field = |c: Option<usize>| c.and_then(|c| record.get(c)).unwrap_or("").to_owned();
        rows.push(Parsed {
            row,
            email: field(Some(email)),
            first_name: field(first),
            last_name: field(last),
            roles: field(roles)
                .split([';', '|'])
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            phone: field(phone),
            attributes: field(attributes),
        });
    }
    Ok(rows)
}

/// Reads an `attributes` cell (`name=value;name=value`, `name=` to clear) by the tenant's
/// definitions.
fn parse_attributes(
    definitions: &BTreeMap<String, AttributeDefinition>,
    cell: &str,
) -> Result<BTreeMap<String, Option<Value>>, AppError> {
    let mut values = BTreeMap::new();
    for pair in cell.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, text)) = pair.split_once('=') else {
            return Err(invalid(format!(
                "attributes are name=value pairs separated by `;`, not `{pair}`"
            )));
        };
        let name = name.trim();
        let definition = definitions
            .get(name)
            .ok_or_else(|| UserError::from(attributes::AttributeError::Unknown(name.to_owned())))?;
        let value = if text.trim().is_empty() {
            None
        } else {
            Some(definition.parse(name, text).map_err(UserError::from)?)
        };
        if values.insert(name.to_owned(), value).is_some() {
            return Err(invalid(format!("the attribute `{name}` is given twice")));
        }
    }
    Ok(values)
}

impl People {
    /// Plans an import of `csv` into `tenant` and, unless `dry_run`, carries it out as one bulk
    /// request (each operation authorized and decided as the single one). The plan is decided
    /// by the same rules: a malformed address or name, an unknown role, or a role the caller may
    /// not give makes a row invalid, and an invalid row is not carried out.
    ///
    /// Who: `users:update` in the tenant (as for bulk requests), then each operation's rule.
    pub async fn import(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        csv: &str,
        dry_run: bool,
    ) -> Result<Vec<ImportRow>, AppError> {
        self.named_permission(caller, tenant, "users", Action::Update)
            .await?;
        let view = self.tenant_view(tenant).await?;
        let parsed = parse(csv)?;
        let mut rows = Vec::with_capacity(parsed.len());
        let mut names = Vec::with_capacity(parsed.len());
        let mut seen = BTreeSet::new();
        for row in parsed {
            names.push((
                row.first_name.clone(),
                row.last_name.clone(),
                row.phone.clone(),
            ));
            let values = parse_attributes(&view.attributes, &row.attributes);
            let plan = match &values {
                Ok(values) => self.plan_row(caller, tenant, &view, &row, values).await,
                Err(error) => Err(error.clone()),
            };
            let plan = match plan {
                Ok(plan) => plan,
                Err(error) => RowPlan::Invalid(error),
            };
            let key = normalize_email(&row.email).unwrap_or_else(|_| row.email.clone());
            let plan = if !matches!(plan, RowPlan::Invalid(_)) && !seen.insert(key) {
                RowPlan::Invalid(invalid("the address is on an earlier row too"))
            } else {
                plan
            };
            rows.push(ImportRow {
                row: row.row,
                email: row.email,
                plan,
                attributes: values.unwrap_or_default(),
                outcomes: Vec::new(),
            });
        }
        if dry_run {
            return Ok(rows);
        }
        // The plan as bulk operations, remembering which row each belongs to.
        let mut operations = Vec::new();
        let mut owners = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            match &row.plan {
                RowPlan::Create { roles } => {
                    let (first_name, last_name, phone) = names[index].clone();
                    operations.push(BulkOperation::Create(NewUserRequest {
                        email: row.email.clone(),
                        first_name,
                        last_name,
                        roles: roles.clone(),
                        invite: false,
                        phone: Some(phone),
                        attributes: Some(row.attributes.clone()),
                    }));
                    owners.push(index);
                }
                RowPlan::AssignRoles { user, roles } | RowPlan::Update { user, roles } => {
                    for role in roles {
                        operations.push(BulkOperation::AssignRole {
                            user: *user,
                            role: role.clone(),
                            expires_at: None,
                        });
                        owners.push(index);
                    }
                    if matches!(row.plan, RowPlan::Update { .. }) {
                        operations.push(BulkOperation::SetAttributes {
                            user: *user,
                            attributes: row.attributes.clone(),
                        });
                        owners.push(index);
                    }
                }
                RowPlan::Unchanged { .. } | RowPlan::Invalid(_) => {}
            }
        }
        let outcomes = self.bulk(caller, tenant, operations).await?;
        for (outcome, index) in outcomes.into_iter().zip(owners) {
            rows[index].outcomes.push(outcome);
        }
        Ok(rows)
    }

    /// What one row would do, decided by the rules of the operations it becomes.
    async fn plan_row(
        &self,
        caller: &Caller,
        tenant: &TenantId,
        view: &idstream_directory::TenantView,
        row: &Parsed,
        values: &BTreeMap<String, Option<Value>>,
    ) -> Result<RowPlan, AppError> {
        let default_role = &view.settings.default_role;
        let email = normalize_email(&row.email)?;
        let phone = match row.phone.as_str() {
            "" => None,
            text => Some(user::normalize_phone(text)?),
        };
        let roles: Vec<RoleName> = if row.roles.is_empty() {
            vec![default_role.clone()]
        } else {
            row.roles
                .iter()
                .map(|r| {
                    r.parse::<RoleName>()
                        .map_err(|e| invalid(format!("role `{r}`: {e}")))
                })
                .collect::<Result<_, _>>()?
        };
        for role in &roles {
            self.may_give_role(caller, tenant, role).await?;
        }
        match self.find_user_by_email(&email).await? {
            None => {
                // The profile is checked as creating the user would check it.
                user::decide(
                    &User::default(),
                    UserCommand::Register(NewUser {
                        email,
                        first_name: row.first_name.clone(),
                        last_name: row.last_name.clone(),
                        tenant: tenant.clone(),
                    }),
                )?;
                attributes::change(
                    &view.attributes,
                    &BTreeMap::new(),
                    values,
                    Editor::Administrator,
                    true,
                )
                .map_err(UserError::from)?;
                Ok(RowPlan::Create { roles })
            }
            Some(existing) => {
                if phone.is_some() && phone != existing.phone {
                    return Err(invalid(
                        "the user exists with another phone number (or none); an import sets the phone numbers of the users it creates only (change it with PUT /v1/users/{user}/profile)",
                    ));
                }
                let current = existing.attributes.get(tenant).cloned().unwrap_or_default();
                let after = attributes::change(
                    &view.attributes,
                    &current,
                    values,
                    Editor::Administrator,
                    false,
                )
                .map_err(UserError::from)?;
                let held = self
                    .directory()
                    .membership(tenant, &existing.id)
                    .map_err(internal)?
                    .map(|m| m.roles)
                    .unwrap_or_default();
                let lacking: Vec<RoleName> =
                    roles.into_iter().filter(|r| !held.contains(r)).collect();
                if after != current {
                    Ok(RowPlan::Update {
                        user: existing.id,
                        roles: lacking,
                    })
                } else if lacking.is_empty() {
                    Ok(RowPlan::Unchanged { user: existing.id })
                } else {
                    Ok(RowPlan::AssignRoles {
                        user: existing.id,
                        roles: lacking,
                    })
                }
            }
        }
    }
}
