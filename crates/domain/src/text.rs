//! What text people give things must be, when others are shown it: names (of users, tenants and
//! API keys), role descriptions and menu labels.
//!
//! Such text is shown to other people, so it must show what it is:
//!
//! - no control characters;
//! - no bidirectional formatting characters, the embeddings, overrides and isolates
//!   U+202A–U+202E and U+2066–U+2069: they reorder the text around them when it is displayed,
//!   so a name holding one can read as something other than what it is ("Trojan Source"), and
//!   no name needs one (right-to-left scripts display right to left without them);
//! - if it is not empty, something visible: text made only of whitespace and of the zero-width
//!   and format characters U+200B–U+200D, U+2060 and U+FEFF looks empty (or like nothing at
//!   all) but is not.
//!
//! Whether empty text is allowed is each caller's rule ([`shows_something`] for required text).

/// An embedding, override or isolate (U+202A–U+202E, U+2066–U+2069).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A zero-width or format character that shows nothing: U+200B–U+200D (zero-width space,
/// non-joiner, joiner), U+2060 (word joiner) and U+FEFF (zero-width no-break space).
pub fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// Whether the text holds something visible: a character that is neither whitespace nor
/// invisible ([`is_invisible`]).
pub fn shows_something(text: &str) -> bool {
    text.chars().any(|c| !c.is_whitespace() && !is_invisible(c))
}

/// Whether the text may be shown to people as it is: no control or bidirectional formatting
/// character, and, unless it is empty, something visible.
pub fn is_displayable(text: &str) -> bool {
    !text.chars().any(|c| c.is_control() || is_bidi_control(c))
        && (text.is_empty() || shows_something(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_plain_names_in_any_script_when_checked_then_they_are_displayable() {
        for name in [
            "Ada",
            "Ada Lovelace",
            "Zoë",
            "محمد",
            "שלום",
            "李雷",
            "O'Brien-Smith",
            "",
        ] {
            assert!(is_displayable(name), "{name:?}");
        }
    }

    #[test]
    fn given_a_bidirectional_override_embedding_or_isolate_anywhere_when_checked_then_refused() {
        for c in ['\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}'] {
            assert!(!is_displayable(&format!("Ada{c}")), "{:04X}", c as u32);
            assert!(!is_displayable(&c.to_string()), "{:04X}", c as u32);
        }
        for c in ['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'] {
            assert!(!is_displayable(&format!("{c}Ada")), "{:04X}", c as u32);
        }
        // The marks (U+200E, U+200F) only set the direction of neutral characters next to them:
        // they reorder nothing else and stay allowed.
        assert!(is_displayable("Ada\u{200F}"));
    }

    #[test]
    fn given_only_zero_width_or_format_characters_and_whitespace_when_checked_then_refused() {
        for text in [
            "\u{200B}",
            "\u{200C}\u{200D}",
            " \u{2060} ",
            "\u{FEFF}",
            "\u{200B}\u{00A0}\u{200B}",
        ] {
            assert!(!shows_something(text), "{text:?}");
            assert!(!is_displayable(text), "{text:?}");
        }
    }

    #[test]
    fn given_visible_text_with_a_zero_width_joiner_when_checked_then_it_is_displayable() {
        // Joiners belong inside words of some scripts and inside emoji sequences.
        assert!(is_displayable("Ada\u{200D}Lovelace"));
        assert!(is_displayable("👩\u{200D}💻"));
    }

    #[test]
    fn given_control_characters_when_checked_then_refused() {
        assert!(!is_displayable("a\nb"));
        assert!(!is_displayable("a\u{0007}"));
    }

    #[test]
    fn given_empty_or_blank_text_when_asked_whether_it_shows_something_then_no() {
        assert!(!shows_something(""));
        assert!(!shows_something("   "));
        assert!(shows_something(" a "));
    }
}
