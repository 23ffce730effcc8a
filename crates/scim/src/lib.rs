//! The protocol core of SCIM 2.0 (RFC 7643 core schema, RFC 7644 protocol), for the SCIM
//! endpoints that identity providers such as Okta and Microsoft Entra ID provision through.
//!
//! It works on resources as plain `serde_json::Value`s and on the text of query parameters and
//! request bodies, and provides:
//!
//! - [`ScimError`]: SCIM errors and their JSON (RFC 7644 §3.12).
//! - [`AttrPath`]: attribute paths, URN-qualified or not (§3.10).
//! - [`Filter`]: filters parsed to a tree ([`Filter::parse`]) and evaluated against a resource
//!   ([`Filter::matches`]) (§3.4.2.2).
//! - [`Sort`]: `sortBy`/`sortOrder` as a comparator of resources (§3.4.2.3).
//! - [`Projection`]: `attributes`/`excludedAttributes` (§3.4.2.5, §3.9).
//! - [`PatchRequest`]: PATCH bodies parsed and applied to a resource (§3.5.2).
//! - [`ListResponse`] and [`Paging`]: list responses and `startIndex`/`count` (§3.4.2.4).
//!
//! What the core needs to know about attributes (case-exactness, types, mutability, when they
//! are returned) comes from the caller through [`AttributeRules`]; [`RuleSet::rfc7643`] has the
//! RFC's defaults.
//!
//! **What this crate must never do.** No IO (no network, files or clock), no async, no global
//! state, and no knowledge of idstream itself: not its events, its storage, its read models nor
//! its HTTP framework. It depends on no other crate of the workspace. Mapping idstream's users and
//! groups to SCIM resources, and SCIM changes to idstream commands, belongs to the caller. Every
//! function is pure and total: malformed or hostile input gives a [`ScimError`], never a panic,
//! and is bounded ([`filter::MAX_FILTER_LEN`], [`filter::MAX_DEPTH`]).

mod compare;
mod datetime;
pub mod error;
mod eval;
pub mod filter;
mod json;
pub mod list;
pub mod patch;
pub mod path;
pub mod projection;
pub mod rules;
pub mod sort;

pub use error::{ScimError, ScimType};
pub use filter::{CompareOp, Filter};
pub use list::{ListResponse, Paging};
pub use patch::{PatchOpKind, PatchOperation, PatchPath, PatchRequest};
pub use path::AttrPath;
pub use projection::Projection;
pub use rules::{AttrKind, AttributeRule, AttributeRules, Mutability, NoRules, Returned, RuleSet};
pub use sort::{Sort, SortOrder};
