//! The HR feed: who is employed, read from a CSV or JSON file.
//!
//! CSV: a header row naming the columns `email`, `first_name`, `last_name` and, optionally,
//! `roles` (in any order, case-insensitive; other columns are ignored). Roles within the cell are
//! separated by `;` or spaces.
//!
//! ```text
//! email,first_name,last_name,roles
//! ada@example.com,Ada,Lovelace,admin;user
//! grace@example.com,Grace,Hopper,
//! ```
//!
//! JSON: an array of objects with `email`, `first_name`, `last_name` and an optional `roles`
//! array (other fields are ignored).
//!
//! ```text
//! [{"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "roles": ["admin"]}]
//! ```
//!
//! Addresses are compared the way idstream normalises them (trimmed, Unicode NFC, lower-case), and
//! names are trimmed. An address listed twice, a row without an address, or an address without
//! `@` makes the whole feed invalid: a half-read feed must never be mistaken for the workforce.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;

/// One employee as the feed lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Employee {
    /// Normalised (trimmed, NFC, lower-case).
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// The roles a joiner is invited with; `None` when the feed does not say.
    pub roles: Option<BTreeSet<String>>,
}

/// The feed's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    /// From the file name's extension (`.csv`, `.json`).
    pub fn of_path(path: &Path) -> Option<Format> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => Some(Format::Csv),
            Some("json") => Some(Format::Json),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot read the feed {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot tell the feed's format from {0}: name it .csv or .json, or pass --format")]
    UnknownFormat(String),
    #[error("the CSV feed is malformed: {0}")]
    Csv(String),
    #[error("the CSV feed has no `{0}` column")]
    MissingColumn(&'static str),
    #[error("the JSON feed is malformed: {0}")]
    Json(String),
    #[error("employee {entry}: {reason}")]
    Invalid { entry: String, reason: String },
    #[error("{email} is listed more than once")]
    Duplicate { email: String },
}

/// Reads and checks a feed file.
pub fn read(path: &Path, format: Option<Format>) -> Result<Vec<Employee>, FeedError> {
    let format = format
        .or_else(|| Format::of_path(path))
        .ok_or_else(|| FeedError::UnknownFormat(path.display().to_string()))?;
    let text = std::fs::read_to_string(path).map_err(|source| FeedError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, format)
}

/// Parses and checks a feed's text.
pub fn parse(text: &str, format: Format) -> Result<Vec<Employee>, FeedError> {
    let rows = match format {
        Format::Csv => parse_csv(text)?,
        Format::Json => parse_json(text)?,
    };
    let mut seen = BTreeSet::new();
    let mut employees = Vec::with_capacity(rows.len());
    for (entry, row) in rows {
        let employee = row.check(&entry)?;
        if !seen.insert(employee.email.clone()) {
            return Err(FeedError::Duplicate {
                email: employee.email,
            });
        }
        employees.push(employee);
    }
    Ok(employees)
}

/// A row as read, before it is checked.
#[derive(Debug, Deserialize)]
struct Row {
    email: String,
    first_name: String,
    last_name: String,
    #[serde(default)]
    roles: Option<Vec<String>>,
}

impl Row {
    fn check(self, entry: &str) -> Result<Employee, FeedError> {
        let invalid = |reason: &str| FeedError::Invalid {
            entry: entry.to_owned(),
            reason: reason.to_owned(),
        };
        let email = normalize_email(&self.email);
        if email.is_empty() {
            return Err(invalid("no email address"));
        }
        let well_formed = email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
            && !email.chars().any(char::is_whitespace);
        if !well_formed {
            return Err(invalid(&format!("{email:?} is not an email address")));
        }
        let roles = self.roles.map(|roles| {
            roles
                .iter()
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .collect::<BTreeSet<String>>()
        });
        Ok(Employee {
            email,
            first_name: self.first_name.trim().to_owned(),
            last_name: self.last_name.trim().to_owned(),
            roles: roles.filter(|r| !r.is_empty()),
        })
    }
}

/// Trimmed, NFC, lower-case: how idstream compares addresses.
pub fn normalize_email(raw: &str) -> String {
    raw.trim().nfc().collect::<String>().to_lowercase()
}

fn parse_csv(text: &str) -> Result<Vec<(String, Row)>, FeedError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| FeedError::Csv(e.to_string()))?
        .clone();
    let column = |name: &'static str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let email = column("email").ok_or(FeedError::MissingColumn("email"))?;
    let first = column("first_name").ok_or(FeedError::MissingColumn("first_name"))?;
    let last = column("last_name").ok_or(FeedError::MissingColumn("last_name"))?;
    let roles = column("roles");
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| FeedError::Csv(e.to_string()))?;
        let line = record
            .position()
            .map_or_else(|| "?".to_owned(), |p| p.line().to_string());
        let cell = |i: usize| record.get(i).unwrap_or_default().to_owned();
        rows.push((
            format!("on line {line}"),
            Row {
                email: cell(email),
                first_name: cell(first),
                last_name: cell(last),
                roles: roles.map(|i| {
                    cell(i)
                        .split(|c: char| c == ';' || c.is_whitespace())
                        .map(str::to_owned)
                        .collect()
                }),
            },
        ));
    }
    Ok(rows)
}

fn parse_json(text: &str) -> Result<Vec<(String, Row)>, FeedError> {
    let rows: Vec<Row> = serde_json::from_str(text).map_err(|e| FeedError::Json(e.to_string()))?;
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| (format!("#{}", i + 1), row))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(names: &[&str]) -> Option<BTreeSet<String>> {
        Some(names.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn a_csv_feed_is_read_by_column_name_with_optional_roles() {
        let feed = "Last_Name, email ,first_name,roles,department\n\
                    Lovelace,  Ada@Example.COM ,Ada,admin;user,R&D\n\
                    \"Hopper, Jr.\",grace@example.com, Grace ,,Ops\n";
        let employees = parse(feed, Format::Csv).unwrap();
        assert_eq!(
            employees,
            vec![
                Employee {
                    email: "ada@example.com".into(),
                    first_name: "Ada".into(),
                    last_name: "Lovelace".into(),
                    roles: roles(&["admin", "user"]),
                },
                Employee {
                    email: "grace@example.com".into(),
                    first_name: "Grace".into(),
                    last_name: "Hopper, Jr.".into(),
                    roles: None,
                },
            ]
        );
        // Without a roles column nobody has roles.
        let employees = parse("email,first_name,last_name\na@b.io,A,B\n", Format::Csv).unwrap();
        assert_eq!(employees[0].roles, None);
    }

    #[test]
    fn a_json_feed_is_an_array_of_employees() {
        let feed = r#"[{"email": "ada@example.com", "first_name": "Ada", "last_name": "L",
                        "roles": ["user"], "employee_no": 7},
                       {"email": "bob@example.com", "first_name": "Bob", "last_name": "B"}]"#;
        let employees = parse(feed, Format::Json).unwrap();
        assert_eq!(employees.len(), 2);
        assert_eq!(employees[0].roles, roles(&["user"]));
        assert_eq!(employees[1].roles, None);
    }

    #[test]
    fn feeds_that_cannot_be_trusted_whole_are_refused() {
        assert!(matches!(
            parse("email,first_name\na@b.io,A\n", Format::Csv),
            Err(FeedError::MissingColumn("last_name"))
        ));
        assert!(matches!(
            parse(
                "email,first_name,last_name\na@b.io,A,B\nA@B.io ,C,D\n",
                Format::Csv
            ),
            Err(FeedError::Duplicate { .. })
        ));
        assert!(matches!(
            parse(
                "email,first_name,last_name\nnot-an-address,A,B\n",
                Format::Csv
            ),
            Err(FeedError::Invalid { .. })
        ));
        assert!(matches!(
            parse("email,first_name,last_name\na@b.io,A\n", Format::Csv),
            Err(FeedError::Csv(_))
        ));
        assert!(matches!(
            parse(r#"[{"email": "a@b.io", "first_name": "A"}]"#, Format::Json),
            Err(FeedError::Json(_))
        ));
        assert_eq!(Format::of_path(Path::new("people.CSV")), Some(Format::Csv));
        assert_eq!(Format::of_path(Path::new("people.txt")), None);
    }
}
