//! A connection's result format options (pgwire's [`FormatOptions`], from the client's
//! `DateStyle`, `IntervalStyle`, `bytea_output` and `extra_float_digits`), made again only when
//! one of those changed: every query needs them, and making them copies several strings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pgwire::types::format::FormatOptions;

/// The client metadata [`FormatOptions::from_client_metadata`] may read (`timezone` too, should
/// a pgwire release start reading it).
const READ: [&str; 5] = [
    "datestyle",
    "intervalstyle",
    "bytea_output",
    "extra_float_digits",
    "timezone",
];

/// One connection's format options, with the metadata values they were made from.
#[derive(Debug, Default)]
pub(crate) struct SessionFormatOptions {
    made: Mutex<Option<(Vec<Option<String>>, Arc<FormatOptions>)>>,
}

impl SessionFormatOptions {
    /// The format options of a client whose metadata is `metadata`.
    pub(crate) fn of(&self, metadata: &HashMap<String, String>) -> Arc<FormatOptions> {
        let mut made = self.made.lock().expect("format options poisoned");
        if let Some((from, options)) = &*made
            && READ
                .iter()
                .zip(from)
                .all(|(key, value)| metadata.get(*key) == value.as_ref())
        {
            return Arc::clone(options);
        }
        let options = Arc::new(FormatOptions::from_client_metadata(metadata));
        let from = READ.iter().map(|key| metadata.get(*key).cloned()).collect();
        *made = Some((from, Arc::clone(&options)));
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_made_again_when_the_client_changes_a_format_setting() {
        let session = SessionFormatOptions::default();
        let mut metadata = HashMap::from([("datestyle".to_owned(), "ISO, DMY".to_owned())]);
        let first = session.of(&metadata);
        assert_eq!(first.date_style, "ISO, DMY");
        assert!(Arc::ptr_eq(&first, &session.of(&metadata)));
        metadata.insert("extra_float_digits".to_owned(), "3".to_owned());
        let changed = session.of(&metadata);
        assert_eq!(changed.extra_float_digits, 3);
        metadata.insert("datestyle".to_owned(), "German, DMY".to_owned());
        assert_eq!(session.of(&metadata).date_style, "German, DMY");
        metadata.clear();
        assert_eq!(*session.of(&metadata), FormatOptions::default());
    }
}
