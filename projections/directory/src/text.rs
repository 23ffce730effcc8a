//! How the directory compares text when it searches: a string is *folded* before it is indexed
//! and before it is looked for, so that case, accents and width do not matter.
//!
//! Folding is Unicode compatibility normalisation (NFKC: full-width `Ａ` and ligatures become
//! plain letters), then full case folding (`ß` matches `ss`, `Σ` and `ς` match `σ`), then the
//! removal of combining marks after canonical decomposition (`José` matches `jose`, `Ørsted`
//! keeps its `ø`, a letter of its own), recomposed (NFC) so that a syllable of Hangul stays one
//! character. Control characters are dropped, since the index uses them as separators.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// `text` folded for comparison.
pub fn fold(text: &str) -> String {
    let compatible: String = text.nfkc().collect();
    let folded = caseless::default_case_fold_str(&compatible);
    folded
        .nfd()
        .filter(|c| !is_combining_mark(*c) && !c.is_control())
        .nfc()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn case_accents_and_width_do_not_matter() {
        assert_eq!(fold("José"), "jose");
        assert_eq!(fold("ADA@Example.com"), "ada@example.com");
        assert_eq!(fold("Ｌｏｖｅｌａｃｅ"), "lovelace");
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("ΟΔΥΣΣΕΥΣ"), fold("οδυσσευς"));
        assert_eq!(fold("Zoë Çelik"), "zoe celik");
        assert_eq!(fold("ﬁona"), "fiona");
    }

    #[test]
    fn letters_of_their_own_and_other_scripts_stay() {
        assert_eq!(fold("Ørsted"), "ørsted");
        assert_eq!(fold("Иван Петров"), "иван петров");
        assert_eq!(fold("김민준"), "김민준");
        assert_eq!(fold("山田 太郎"), "山田 太郎");
        assert_eq!(fold("محمد"), "محمد");
    }

    #[test]
    fn control_characters_are_dropped() {
        assert_eq!(fold("a\u{1}b\nc"), "abc");
    }
}
