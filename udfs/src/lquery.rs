//! PostgreSQL's `lquery`: patterns over `ltree` paths (`path ~ 'Total.*.DE'` in PostgreSQL,
//! `lquery_match(path, 'Total.*.DE')` here, since `~` is a regular expression match in
//! DataFusion).
//!
//! A pattern is levels separated by dots; each level matches labels:
//! - `foo` one label equal to `foo`; `foo|bar` either; `!foo|bar` any one label but those;
//! - flags after a label: `*` prefix (`foo*` matches `football`), `@` case-insensitive, `%`
//!   word match (each `_`-separated word of `foo_bar%` equals some word of the label);
//! - `*` any number of labels, `*{n}`, `*{n,}`, `*{,m}`, `*{n,m}` a number of them; a label
//!   level may carry the same counts (`foo{1,3}`, `!foo{2}`).
//!
//! Parsing and matching follow `contrib/ltree`'s `lquery_in` and `ltq_regex` state by state,
//! errors included, with PostgreSQL 16's label rule (see [`crate::ltree`]); a differential test
//! checks them against PostgreSQL.

use crate::ltree::{LtreeError, MAX_LABEL_LENGTH, is_label_char, labels_of};

/// The most levels a count may name (PostgreSQL's `LTREE_MAX_LEVELS`).
const MAX_LEVELS: u32 = u16::MAX as u32;

/// One alternative of a level: a label and how it compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Variant {
    label: String,
    case_insensitive: bool,
    prefix: bool,
    words: bool,
}

/// One level of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Level {
    /// No variants: `*`, any label.
    variants: Vec<Variant>,
    negated: bool,
    /// How many labels the level takes: `*` and counted levels say; a plain level one.
    low: u32,
    high: u32,
}

/// A parsed `lquery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lquery {
    levels: Vec<Level>,
}

/// What the parser waits for next, as `lquery_in`'s states (`LQPRS_WAIT...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Level,
    Delimiter,
    Open,
    FirstNumber,
    SecondNumber,
    NumberEnd,
    Close,
    End,
    Variant,
}

impl Lquery {
    /// Parses `text` as PostgreSQL's `lquery_in` does.
    pub fn parse(text: &str) -> Result<Self, LtreeError> {
        let syntax = |position: usize, detail: &str| LtreeError::LquerySyntax {
            text: text.to_owned(),
            position,
            detail: detail.to_owned(),
        };
        let chars: Vec<char> = text.chars().collect();
        let new_level = || Level {
            variants: Vec::new(),
            negated: false,
            low: 1,
            high: 1,
        };
        let mut levels = vec![new_level()];
        let mut state = State::Level;
        // The label being read: where it starts (in characters).
        let mut label_start = 0;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let level = levels.last_mut().expect("a level is being read");
            match state {
                // A variant starts: its label is read up to the next delimiter.
                State::Level | State::Variant if is_label_char(c) || c == '!' => {
                    if c == '!' {
                        if state == State::Variant {
                            return Err(syntax(i + 1, ""));
                        }
                        level.negated = true;
                    }
                    label_start = if c == '!' { i + 1 } else { i };
                    level.variants.push(Variant::default());
                    state = State::Delimiter;
                }
                State::Level if c == '*' => {
                    (level.low, level.high) = (0, MAX_LEVELS);
                    state = State::Open;
                }
                State::Delimiter => {
                    let variant = level.variants.last_mut().expect("a variant is being read");
                    let flagged = variant.case_insensitive || variant.prefix || variant.words;
                    match c {
                        '@' => variant.case_insensitive = true,
                        '*' => variant.prefix = true,
                        '%' => variant.words = true,
                        '|' | '{' | '.' => {
                            finish_label(variant, &chars[label_start..i], text, i)?;
                            state = match c {
                                '|' => State::Variant,
                                '{' => {
                                    level.low = 0;
                                    State::FirstNumber
                                }
                                _ => {
                                    levels.push(new_level());
                                    State::Level
                                }
                            };
                        }
                        c if is_label_char(c) && !flagged => {}
                        _ => return Err(syntax(i + 1, "")),
                    }
                }
                State::Open if c == '{' => {
                    level.low = 0;
                    state = State::FirstNumber;
                }
                State::Open if c == '.' => {
                    levels.push(new_level());
                    state = State::Level;
                }
                State::FirstNumber if c == ',' => state = State::SecondNumber,
                State::FirstNumber if c.is_ascii_digit() => {
                    let low = number_at(&chars[i..]);
                    if low > u64::from(MAX_LEVELS) {
                        return Err(LtreeError::LimitTooLarge {
                            detail: format!(
                                "Low limit ({low}) exceeds the maximum allowed ({MAX_LEVELS}), at character {}",
                                i + 1
                            ),
                        });
                    }
                    level.low = low as u32;
                    state = State::NumberEnd;
                }
                State::SecondNumber if c.is_ascii_digit() => {
                    let high = number_at(&chars[i..]);
                    if high > u64::from(MAX_LEVELS) {
                        return Err(LtreeError::LimitTooLarge {
                            detail: format!(
                                "High limit ({high}) exceeds the maximum allowed ({MAX_LEVELS}), at character {}",
                                i + 1
                            ),
                        });
                    }
                    if u64::from(level.low) > high {
                        return Err(syntax(
                            i + 1,
                            &format!(
                                "Low limit ({}) is greater than high limit ({high})",
                                level.low
                            ),
                        ));
                    }
                    level.high = high as u32;
                    state = State::Close;
                }
                State::SecondNumber if c == '}' => {
                    level.high = MAX_LEVELS;
                    state = State::End;
                }
                State::Close if c == '}' => state = State::End,
                State::Close if c.is_ascii_digit() => {}
                State::NumberEnd if c == '}' => {
                    level.high = level.low;
                    state = State::End;
                }
                State::NumberEnd if c == ',' => state = State::SecondNumber,
                State::NumberEnd if c.is_ascii_digit() => {}
                State::End if c == '.' => {
                    levels.push(new_level());
                    state = State::Level;
                }
                _ => return Err(syntax(i + 1, "")),
            }
            i += 1;
        }
        match state {
            State::Delimiter => {
                let level = levels.last_mut().expect("a level is being read");
                let variant = level.variants.last_mut().expect("a variant is being read");
                finish_label(variant, &chars[label_start..], text, chars.len())?;
            }
            State::Open | State::End => {}
            _ => return Err(syntax(chars.len() + 1, "Unexpected end of input.")),
        }
        Ok(Lquery { levels })
    }

    /// Whether `labels` (a path) matches the whole pattern.
    pub fn matches(&self, labels: &[&str]) -> bool {
        matches_from(&self.levels, labels)
    }
}

/// The decimal number at the start of `chars` (its digits only), saturating.
fn number_at(chars: &[char]) -> u64 {
    chars
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .fold(0u64, |n, c| {
            n.saturating_mul(10)
                .saturating_add(u64::from(*c as u8 - b'0'))
        })
}

/// Ends a variant's label at `end` (a character index): the flags after it are not part of it,
/// and it must be neither empty nor too long.
fn finish_label(
    variant: &mut Variant,
    chars: &[char],
    text: &str,
    end: usize,
) -> Result<(), LtreeError> {
    let flags = chars
        .iter()
        .rev()
        .take_while(|c| matches!(c, '@' | '*' | '%'))
        .count();
    let label = &chars[..chars.len() - flags];
    if label.is_empty() {
        return Err(LtreeError::LquerySyntax {
            text: text.to_owned(),
            position: end - flags + 1,
            detail: "Empty labels are not allowed.".to_owned(),
        });
    }
    if label.len() > MAX_LABEL_LENGTH {
        return Err(LtreeError::LabelTooLong {
            length: label.len(),
            position: end - flags + 1,
        });
    }
    variant.label = label.iter().collect();
    Ok(())
}

/// `checkCond`: whether `labels` match `levels` from here on, trying every number of labels a
/// level may take.
fn matches_from(levels: &[Level], labels: &[&str]) -> bool {
    let Some((level, rest)) = levels.split_first() else {
        return labels.is_empty();
    };
    let high = (level.high as usize).min(labels.len());
    let low = level.low as usize;
    if high < low {
        return false;
    }
    for taken in 0..high {
        if taken >= low && matches_from(rest, &labels[taken..]) {
            return true;
        }
        if !level_matches(level, labels[taken]) {
            return false;
        }
    }
    matches_from(rest, &labels[high..])
}

/// `checkLevel`: whether one label matches a level.
fn level_matches(level: &Level, label: &str) -> bool {
    if level.variants.is_empty() {
        return !level.negated;
    }
    let any = level.variants.iter().any(|variant| {
        if variant.words {
            words_match(variant, label)
        } else {
            labels_equal(
                &variant.label,
                label,
                variant.prefix,
                variant.case_insensitive,
            )
        }
    });
    any != level.negated
}

/// `compare_subnode`: every `_`-separated word of the variant equals (or, with `*`, starts)
/// some word of the label.
fn words_match(variant: &Variant, label: &str) -> bool {
    let words = |text: &'_ str| -> Vec<String> {
        text.split('_')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let label_words = words(label);
    words(&variant.label).iter().all(|wanted| {
        label_words
            .iter()
            .any(|word| labels_equal(wanted, word, variant.prefix, variant.case_insensitive))
    })
}

/// A pattern label against a path label, byte by byte as PostgreSQL compares them: equal
/// length, or (with `prefix`) a longer label starting with the pattern; case folded for ASCII
/// letters with `case_insensitive` (PostgreSQL's `C` collation).
fn labels_equal(pattern: &str, label: &str, prefix: bool, case_insensitive: bool) -> bool {
    let (pattern, label) = (pattern.as_bytes(), label.as_bytes());
    let length_fits = pattern.len() == label.len() || (prefix && label.len() > pattern.len());
    if !length_fits {
        return false;
    }
    let label = &label[..pattern.len()];
    match case_insensitive {
        true => pattern.eq_ignore_ascii_case(label),
        false => pattern == label,
    }
}

/// `path ~ pattern`: whether the path matches the `lquery`; both are checked.
pub fn lquery_match(path: &str, pattern: &str) -> Result<bool, LtreeError> {
    let labels = labels_of(path)?;
    Ok(Lquery::parse(pattern)?.matches(&labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(path: &str, pattern: &str) -> bool {
        lquery_match(path, pattern).unwrap()
    }

    #[test]
    fn matches_as_the_postgresql_documentation_shows() {
        // The examples of PostgreSQL's ltree documentation.
        assert!(matches("Top.Science.Astronomy", "*.Astronomy.*"));
        assert!(matches("Top.Science.Astronomy.Cosmology", "*.Astronomy.*"));
        // `!` is about one label: `Top` is not `pictures`.
        assert!(matches("Top.Collections.Pictures", "*.!pictures@.*"));
        assert!(!matches("Pictures", "*.!pictures@.*"));
        assert!(matches(
            "Top.Sport.Hockey.Russia",
            "Top.*{0,2}.sport*@.!football|tennis{1,}.Russ*|Spain"
        ));
        // Without `@`, labels compare case-sensitively: `Football` is not `football`.
        assert!(matches(
            "Top.Sport.Football.Russia",
            "Top.*{0,2}.sport*@.!football|tennis{1,}.Russ*|Spain"
        ));
        assert!(!matches(
            "Top.Sport.football.Russia",
            "Top.*{0,2}.sport*@.!football|tennis{1,}.Russ*|Spain"
        ));
        assert!(matches("Top.Sport.Russia", "Top.*{0,2}.sport*@.*"));
        assert!(matches("foo_bar_baz", "foo_bar%"));
        assert!(!matches("foo_barbaz", "foo_bar%"));
        assert!(matches("foo1_bar2_baz", "foo_bar%*"));
        assert!(!matches("foo1_br2_baz", "foo_bar%*"));
        assert!(matches("a.b.c", "a.*{1}.c"));
        assert!(!matches("a.c", "a.*{1}.c"));
        assert!(matches("a.b.b.c", "a.b{2}.c"));
        assert!(matches("", "*"));
    }

    #[test]
    fn rejects_what_postgresql_rejects() {
        for bad in [
            "", "a.", ".a", "a..b", "a|", "!", "a*b", "*{2,1}", "a{", "a b", "*x",
        ] {
            let error = Lquery::parse(bad).unwrap_err();
            assert_eq!(error.sqlstate(), "42601", "{bad:?}: {error}");
        }
        assert_eq!(Lquery::parse("*{70000}").unwrap_err().sqlstate(), "54000");
    }
}
