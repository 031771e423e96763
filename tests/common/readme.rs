//! The README's example blocks, so tests can run them as written.

use std::path::Path;

/// One example line: the command's words and what is written after its `#`.
pub struct Example {
    pub line: String,
    pub words: Vec<String>,
    pub expect: String,
}

/// The lines starting with `program` in the first fenced block after the
/// HTML comment containing `marker`.
pub fn examples(marker: &str, program: &str) -> Vec<Example> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let after = readme
        .split_once(&format!("<!-- {marker}"))
        .unwrap_or_else(|| panic!("README has no {marker} marker"))
        .1;
    let block = after
        .split("```")
        .nth(1)
        .expect("a fenced block after the marker");
    let found: Vec<Example> = block
        .lines()
        .filter(|l| l.starts_with(&format!("{program} ")))
        .map(|l| {
            let (command, expect) = l.split_once(" # ").unwrap_or((l, ""));
            Example {
                line: l.to_string(),
                words: shell_words(command),
                expect: expect.trim().to_string(),
            }
        })
        .collect();
    assert!(!found.is_empty(), "no {program} lines after {marker}");
    found
}

/// Splits like a POSIX shell for the quoting the examples use: '…', "…"
/// and bare words.
pub fn shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(quote.is_none(), "unbalanced quote in {s:?}");
    words.extend(word);
    words
}
