//! Shaping a display name to what CNAM databases store: at most 15
//! characters of ASCII letters, digits, space and `. , & ' -`.
//!
//! Choices (documented in docs/behaviour.md):
//! - Latin letters with diacritics become their base letters (`é` → `e`,
//!   `Ø` → `O`), ligatures and `ß` are spelled out (`Æ` → `AE`, `ß` → `ss`):
//!   a name loses its accents, not its letters.
//! - Typographic apostrophes and dashes become `'` and `-`.
//! - Any other character (quotes, `/`, `@`, other scripts, emoji) becomes a
//!   space, so `Sales/Support` reads `Sales Support` rather than
//!   `SalesSupport`; runs of spaces collapse and the ends are trimmed.
//! - The result is cut at 15 characters, and trailing spaces are trimmed
//!   again after the cut.

/// Longest CNAM name.
pub const MAX_LEN: usize = 15;

/// The name as a CNAM database will hold it; may be empty.
pub fn shape(name: &str) -> String {
    let mut out = String::with_capacity(MAX_LEN);
    let mut pending_space = false;
    let mut push = |out: &mut String, c: char| {
        if c == ' ' {
            pending_space = !out.is_empty();
            return;
        }
        if pending_space && out.len() < MAX_LEN {
            out.push(' ');
        }
        pending_space = false;
        if out.len() < MAX_LEN {
            out.push(c);
        }
    };
    for c in name.chars() {
        if out.len() >= MAX_LEN {
            break;
        }
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | ',' | '&' | '\'' | '-' => push(&mut out, c),
            '\u{2018}' | '\u{2019}' | '\u{02bc}' | '`' | '\u{00b4}' => push(&mut out, '\''),
            '\u{2010}'..='\u{2015}' | '\u{2212}' => push(&mut out, '-'),
            c => match transliterate(c) {
                Some(s) => s.chars().for_each(|t| push(&mut out, t)),
                None => push(&mut out, ' '),
            },
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out
}

/// Whether `shape` changes the name (what `check-config` warns about).
pub fn is_shaped(name: &str) -> bool {
    shape(name) != name
}

/// ASCII spelling of a Latin letter with a diacritic or a ligature
/// (Latin-1 Supplement and Latin Extended-A); `None` for anything else.
fn transliterate(c: char) -> Option<&'static str> {
    const LATIN1: [&str; 64] = [
        "A", "A", "A", "A", "A", "A", "AE", "C", "E", "E", "E", "E", "I", "I", "I", "I", // C0
        "D", "N", "O", "O", "O", "O", "O", "", "O", "U", "U", "U", "U", "Y", "TH", "ss", // D0
        "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i", // E0
        "d", "n", "o", "o", "o", "o", "o", "", "o", "u", "u", "u", "u", "y", "th", "y", // F0
    ];
    // Latin Extended-A, U+0100..=U+017F: mostly upper/lower pairs.
    const EXT_A: [&str; 128] = [
        "A", "a", "A", "a", "A", "a", "C", "c", "C", "c", "C", "c", "C", "c", "D", "d", // 100
        "D", "d", "E", "e", "E", "e", "E", "e", "E", "e", "E", "e", "G", "g", "G", "g", // 110
        "G", "g", "G", "g", "H", "h", "H", "h", "I", "i", "I", "i", "I", "i", "I", "i", // 120
        "I", "i", "IJ", "ij", "J", "j", "K", "k", "k", "L", "l", "L", "l", "L", "l",
        "L", // 130
        "l", "L", "l", "N", "n", "N", "n", "N", "n", "n", "N", "n", "O", "o", "O", "o", // 140
        "O", "o", "OE", "oe", "R", "r", "R", "r", "R", "r", "S", "s", "S", "s", "S",
        "s", // 150
        "S", "s", "T", "t", "T", "t", "T", "t", "U", "u", "U", "u", "U", "u", "U", "u", // 160
        "U", "u", "U", "u", "W", "w", "Y", "y", "Y", "Z", "z", "Z", "z", "Z", "z", "s", // 170
    ];
    let cp = c as u32;
    let s = match cp {
        0xc0..=0xff => LATIN1[(cp - 0xc0) as usize],
        0x100..=0x17f => EXT_A[(cp - 0x100) as usize],
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_names_pass_unchanged() {
        for n in [
            "Acme Support",
            "O'Brien & Co.",
            "Smith-Jones Ltd",
            "A1 Taxi",
        ] {
            assert_eq!(shape(n), n);
            assert!(!is_shaped(n));
        }
    }

    #[test]
    fn accents_become_base_letters() {
        assert_eq!(shape("Café Müller"), "Cafe Muller");
        assert_eq!(shape("Straße Ærø"), "Strasse AEro");
        assert_eq!(shape("Łódź Škoda"), "Lodz Skoda");
    }

    #[test]
    fn other_characters_become_single_spaces() {
        assert_eq!(shape("\"Acme\" Support"), "Acme Support");
        assert_eq!(shape("Sales/Support"), "Sales Support");
        assert_eq!(shape("  Hi  @  there "), "Hi there");
        assert_eq!(shape("Zoë’s Bar – East"), "Zoe's Bar - Eas");
        assert_eq!(shape("東京"), "");
        assert_eq!(shape("×÷"), "");
    }

    #[test]
    fn cut_at_fifteen_without_a_trailing_space() {
        assert_eq!(shape("Acme Customer Support"), "Acme Customer S");
        assert_eq!(shape("Acme Customers Support").len(), 14);
        assert_eq!(shape("Acme Customers Support"), "Acme Customers");
        assert!(shape(&"é".repeat(40)).len() == MAX_LEN);
    }
}
