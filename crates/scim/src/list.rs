//! List responses and paging (RFC 7644 §3.4.2, §3.4.2.4).

use std::ops::Range;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::error::ScimError;

/// The schema URN of a list response.
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// A list (query) response.
#[derive(Debug, Clone, PartialEq)]
pub struct ListResponse {
    /// How many resources matched in all.
    pub total_results: usize,
    /// The 1-based index of the first resource returned.
    pub start_index: usize,
    /// How many resources this page holds.
    pub items_per_page: usize,
    /// The resources of this page.
    pub resources: Vec<Value>,
}

impl ListResponse {
    /// A page of `resources` starting at `start_index` out of `total_results`.
    pub fn new(total_results: usize, start_index: usize, resources: Vec<Value>) -> Self {
        ListResponse {
            total_results,
            start_index,
            items_per_page: resources.len(),
            resources,
        }
    }

    /// The page `paging` selects from all the matching resources, in order.
    pub fn page(all: Vec<Value>, paging: Paging) -> Self {
        let total = all.len();
        let window = paging.window(total);
        let resources = all
            .into_iter()
            .skip(window.start)
            .take(window.len())
            .collect();
        ListResponse::new(total, paging.start_index, resources)
    }

    /// The response as SCIM JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl Serialize for ListResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("schemas", &[LIST_RESPONSE_SCHEMA])?;
        map.serialize_entry("totalResults", &self.total_results)?;
        map.serialize_entry("startIndex", &self.start_index)?;
        map.serialize_entry("itemsPerPage", &self.items_per_page)?;
        map.serialize_entry("Resources", &self.resources)?;
        map.end()
    }
}

/// The `startIndex` and `count` of a query, made safe to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// 1-based index of the first result (at least 1).
    pub start_index: usize,
    /// How many results at most (0 asks for `totalResults` only).
    pub count: usize,
}

impl Paging {
    /// Reads the query parameters: `startIndex` absent or below 1 is 1; `count` absent is
    /// `max_count`, negative is 0, above `max_count` is `max_count`. Text that is not an integer
    /// is a 400 `invalidValue`.
    pub fn parse(
        start_index: Option<&str>,
        count: Option<&str>,
        max_count: usize,
    ) -> Result<Paging, ScimError> {
        let start_index = parse_integer("startIndex", start_index)?;
        let count = parse_integer("count", count)?;
        Ok(Paging::from_numbers(start_index, count, max_count))
    }

    /// The same rules for numbers already read (from a POST `.search` body, say).
    pub fn from_numbers(start_index: Option<i64>, count: Option<i64>, max_count: usize) -> Paging {
        let start_index = usize::try_from(start_index.unwrap_or(1).max(1)).unwrap_or(usize::MAX);
        let count = match count {
            None => max_count,
            Some(count) => usize::try_from(count.max(0))
                .unwrap_or(usize::MAX)
                .min(max_count),
        };
        Paging { start_index, count }
    }

    /// The 0-based range of results this page holds, out of `total`.
    pub fn window(&self, total: usize) -> Range<usize> {
        let start = self.start_index.saturating_sub(1).min(total);
        let end = start.saturating_add(self.count).min(total);
        start..end
    }
}

/// Reads an optional integer parameter; absent or blank is `None`, out-of-range values
/// saturate.
fn parse_integer(name: &str, text: Option<&str>) -> Result<Option<i64>, ScimError> {
    let Some(text) = text.map(str::trim).filter(|text| !text.is_empty()) else {
        return Ok(None);
    };
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(ScimError::invalid_value(format!(
            "{name} must be an integer, not {text:?}"
        )));
    }
    let saturated = if text.starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    };
    Ok(Some(text.parse().unwrap_or(saturated)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ScimType;
    use serde_json::json;

    #[test]
    fn given_a_page_when_serialised_then_the_list_response_json() {
        let response = ListResponse::new(3, 2, vec![json!({"id": "b"})]);
        assert_eq!(
            response.to_json(),
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "totalResults": 3,
                "startIndex": 2,
                "itemsPerPage": 1,
                "Resources": [{"id": "b"}]
            })
        );
    }

    #[test]
    fn given_no_parameters_when_parsed_then_first_page_of_the_maximum() {
        assert_eq!(
            Paging::parse(None, None, 100).unwrap(),
            Paging {
                start_index: 1,
                count: 100
            }
        );
        assert_eq!(
            Paging::parse(Some(""), Some(" "), 100).unwrap(),
            Paging {
                start_index: 1,
                count: 100
            }
        );
    }

    #[test]
    fn given_start_index_below_one_when_parsed_then_one() {
        assert_eq!(Paging::parse(Some("0"), None, 10).unwrap().start_index, 1);
        assert_eq!(Paging::parse(Some("-5"), None, 10).unwrap().start_index, 1);
        assert_eq!(Paging::parse(Some("7"), None, 10).unwrap().start_index, 7);
    }

    #[test]
    fn given_a_negative_or_oversized_count_when_parsed_then_zero_or_the_maximum() {
        assert_eq!(Paging::parse(None, Some("-1"), 10).unwrap().count, 0);
        assert_eq!(Paging::parse(None, Some("0"), 10).unwrap().count, 0);
        assert_eq!(Paging::parse(None, Some("25"), 10).unwrap().count, 10);
        assert_eq!(Paging::parse(None, Some("+4"), 10).unwrap().count, 4);
    }

    #[test]
    fn given_huge_numbers_when_parsed_then_saturated() {
        let paging = Paging::parse(
            Some("99999999999999999999999"),
            Some("-99999999999999999999999"),
            10,
        )
        .unwrap();
        assert_eq!(
            paging,
            Paging {
                start_index: i64::MAX as usize,
                count: 0
            }
        );
        assert_eq!(paging.window(5), 5..5);
    }

    #[test]
    fn given_text_that_is_not_an_integer_when_parsed_then_invalid_value() {
        for text in ["abc", "1.5", "-", "1e3", "٣"] {
            let error = Paging::parse(Some(text), None, 10).unwrap_err();
            assert_eq!(
                (error.status, error.scim_type),
                (400, Some(ScimType::InvalidValue)),
                "{text}"
            );
            assert!(
                error.detail.starts_with("startIndex must be an integer"),
                "{}",
                error.detail
            );
        }
    }

    #[test]
    fn given_paging_when_windowed_then_the_right_slice() {
        let paging = Paging {
            start_index: 2,
            count: 2,
        };
        assert_eq!(paging.window(5), 1..3);
        assert_eq!(paging.window(2), 1..2);
        assert_eq!(paging.window(0), 0..0);
        assert_eq!(
            Paging {
                start_index: 9,
                count: 2
            }
            .window(5),
            5..5
        );
    }

    #[test]
    fn given_all_results_when_paged_then_total_and_page() {
        let all: Vec<Value> = (1..=5).map(|n| json!({"id": n.to_string()})).collect();
        let response = ListResponse::page(
            all.clone(),
            Paging {
                start_index: 4,
                count: 10,
            },
        );
        assert_eq!(
            response,
            ListResponse {
                total_results: 5,
                start_index: 4,
                items_per_page: 2,
                resources: all[3..].to_vec()
            }
        );
        let counted_only = ListResponse::page(
            all,
            Paging {
                start_index: 1,
                count: 0,
            },
        );
        assert_eq!(
            (counted_only.total_results, counted_only.items_per_page),
            (5, 0)
        );
        assert_eq!(counted_only.to_json()["Resources"], json!([]));
    }
}
