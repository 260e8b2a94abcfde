//! PostgreSQL's `json` and `jsonb` documents, held as text: parsing (PostgreSQL's grammar and
//! SQLSTATEs), `jsonb`'s normalised output, and what the operators need (fields, elements,
//! paths, key existence, containment).
//!
//! A [`Document`] borrows the text it was parsed from, so a `json` value's parts come out
//! exactly as written, as PostgreSQL keeps a `json` value's text; a `jsonb` value's parts come
//! out normalised ([`Document::to_jsonb_text`]): keys sorted by length and then bytes, the last
//! of repeated keys kept, `", "` and `": "` between items, numbers as `numeric` prints them.

use std::borrow::Cow;
use std::fmt;

/// The field-metadata tag of `json` text (see [`crate::tagged_text_field`]).
pub const JSON: &str = "json";
/// The field-metadata tag of `jsonb` text.
pub const JSONB: &str = "jsonb";

/// Which of PostgreSQL's two JSON types a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JsonType {
    /// `json`: the text as written.
    Json,
    /// `jsonb`: the text normalised.
    Jsonb,
}

impl JsonType {
    /// The type's name, which is also its tag.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => JSON,
            Self::Jsonb => JSONB,
        }
    }

    /// The type a tag names, if it names one.
    pub fn of_tag(tag: &str) -> Option<Self> {
        [Self::Json, Self::Jsonb]
            .into_iter()
            .find(|kind| kind.name() == tag)
    }
}

/// A document that is not JSON, or that a `jsonb` value cannot hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    sqlstate: &'static str,
    message: String,
}

impl JsonError {
    fn syntax(detail: impl fmt::Display) -> Self {
        Self {
            sqlstate: "22P02",
            message: format!("invalid input syntax for type json: {detail}"),
        }
    }

    /// An operation the document does not allow (`22023`, PostgreSQL's words in `message`).
    pub(crate) fn invalid(message: &str) -> Self {
        Self {
            sqlstate: "22023",
            message: message.to_owned(),
        }
    }

    /// The PostgreSQL SQLSTATE: `22023` an operation the document does not allow, `22P02` not JSON, `22P05` a `\u0000` where text is needed,
    /// `22003` a number `numeric` cannot hold, `54001` nesting too deep.
    pub fn sqlstate(&self) -> &'static str {
        self.sqlstate
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JsonError {}

/// How deep arrays and objects may nest (PostgreSQL's limit is its stack depth).
const MAX_DEPTH: usize = 1000;

/// One JSON value and the exact text it was parsed from.
#[derive(Debug)]
pub struct Document<'a> {
    raw: &'a str,
    value: Value<'a>,
}

/// What a [`Document`] is. Strings and keys are kept as written between their quotes and
/// unescaped when read.
#[derive(Debug)]
enum Value<'a> {
    Null,
    Bool(bool),
    Number(&'a str),
    String(&'a str),
    Array(Vec<Document<'a>>),
    Object(Vec<(&'a str, Document<'a>)>),
}

impl<'a> Document<'a> {
    /// Parses `text`, one JSON value with optional whitespace around it.
    pub fn parse(text: &'a str) -> Result<Self, JsonError> {
        let mut parser = Parser { text, at: 0 };
        let document = parser.value(0)?;
        parser.skip_whitespace();
        match parser.rest().chars().next() {
            None => Ok(document),
            Some(_) => Err(JsonError::syntax(format!(
                "expected end of input, but found \"{}\"",
                parser.token()
            ))),
        }
    }

    /// `typeof`: `object`, `array`, `string`, `number`, `boolean` or `null`.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// The value of an object's `key` (the last, when the key repeats); `None` for a missing
    /// key or a document that is no object.
    pub fn field(&self, key: &str) -> Result<Option<&Self>, JsonError> {
        let Value::Object(members) = &self.value else {
            return Ok(None);
        };
        for (name, value) in members.iter().rev() {
            if unescaped(name)? == key {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// An array's element `index`, counted from the end when negative; `None` outside the
    /// array or for an object. A scalar is `None` as `json` and, as `jsonb` (which stores it
    /// as an array of one), its own element 0 (and -1).
    pub fn element(&self, index: i64, of: JsonType) -> Option<&Self> {
        let elements = match &self.value {
            Value::Array(elements) => elements,
            Value::Object(_) => return None,
            _ => return (of == JsonType::Jsonb && matches!(index, 0 | -1)).then_some(self),
        };
        let index = match index {
            ..0 => elements.len().checked_sub(index.unsigned_abs() as usize)?,
            _ => usize::try_from(index).ok()?,
        };
        elements.get(index)
    }

    /// The value at `path`: each step a key of an object or the index of an array element
    /// (`None` when a step finds nothing, as PostgreSQL's `#>` gives NULL).
    pub fn at_path<S: AsRef<str>>(&self, path: &[S]) -> Result<Option<&Self>, JsonError> {
        let mut here = self;
        for step in path {
            let step = step.as_ref();
            let next = match &here.value {
                Value::Object(_) => here.field(step)?,
                // As PostgreSQL's strtol: leading blanks are taken, trailing ones are not.
                Value::Array(_) => step
                    .trim_start()
                    .parse::<i64>()
                    .ok()
                    .and_then(|index| here.element(index, JsonType::Json)),
                _ => None,
            };
            match next {
                Some(next) => here = next,
                None => return Ok(None),
            }
        }
        Ok(Some(here))
    }

    /// The document as a value of type `of`: as written for `json`, normalised for `jsonb`.
    pub fn to_text(&self, of: JsonType) -> Result<String, JsonError> {
        match of {
            JsonType::Json => Ok(self.raw.to_owned()),
            JsonType::Jsonb => self.to_jsonb_text(),
        }
    }

    /// The document as `->>` gives it: a string's text, NULL for `null`, else the document as
    /// a value of type `of`.
    pub fn to_plain_text(&self, of: JsonType) -> Result<Option<String>, JsonError> {
        match self.value {
            Value::Null => Ok(None),
            Value::String(text) => Ok(Some(unescaped(text)?.into_owned())),
            _ => self.to_text(of).map(Some),
        }
    }

    /// The document as PostgreSQL prints a `jsonb` value.
    pub fn to_jsonb_text(&self) -> Result<String, JsonError> {
        let mut out = String::with_capacity(self.raw.len());
        self.write_jsonb(&mut out)?;
        Ok(out)
    }

    fn write_jsonb(&self, out: &mut String) -> Result<(), JsonError> {
        match &self.value {
            Value::Null => out.push_str("null"),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::Number(text) => out.push_str(&normalized_number(text)?),
            Value::String(text) => write_string(&unescaped(text)?, out),
            Value::Array(elements) => {
                out.push('[');
                for (i, element) in elements.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    element.write_jsonb(out)?;
                }
                out.push(']');
            }
            Value::Object(_) => {
                out.push('{');
                for (i, (key, value)) in self.members()?.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_key(&key, out);
                    value.write_jsonb(out)?;
                }
                out.push('}');
            }
        }
        Ok(())
    }

    /// An object's members as `jsonb` holds them: one per key (the last written), ordered by
    /// key length and then bytes.
    fn members(&self) -> Result<Vec<(Cow<'a, str>, &Self)>, JsonError> {
        let Value::Object(members) = &self.value else {
            return Ok(Vec::new());
        };
        let mut keyed = members
            .iter()
            .enumerate()
            .map(|(i, (key, value))| Ok((unescaped(key)?, i, value)))
            .collect::<Result<Vec<_>, JsonError>>()?;
        // By key, the last written first, so that deduplication keeps it.
        keyed.sort_by(|(a, i, _), (b, j, _)| {
            (a.len(), a.as_bytes())
                .cmp(&(b.len(), b.as_bytes()))
                .then(j.cmp(i))
        });
        keyed.dedup_by(|(later, ..), (kept, ..)| later == kept);
        Ok(keyed
            .into_iter()
            .map(|(key, _, value)| (key, value))
            .collect())
    }

    /// `jsonb`'s `?`: `key` is a key of the object, a string element of the array, or the
    /// string itself.
    pub fn has_key(&self, key: &str) -> Result<bool, JsonError> {
        match &self.value {
            Value::Object(_) => Ok(self.field(key)?.is_some()),
            Value::Array(elements) => {
                for element in elements {
                    if let Value::String(text) = element.value
                        && unescaped(text)? == key
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Value::String(text) => Ok(unescaped(text)? == key),
            _ => Ok(false),
        }
    }

    /// `jsonb`'s `||`: two objects merged (the right one's value kept for a key both have),
    /// any other two documents as one array of the elements of both (a document that is no
    /// array stands for an array of itself).
    pub fn concatenated(&self, other: &Self) -> Result<String, JsonError> {
        let joined = match (&self.value, &other.value) {
            (Value::Object(_), Value::Object(_)) => {
                let members: Vec<String> = [self, other]
                    .into_iter()
                    .map(|object| object.member_texts(&[] as &[&str]))
                    .collect::<Result<Vec<_>, JsonError>>()?
                    .concat();
                format!("{{{}}}", members.join(", "))
            }
            _ => {
                let elements = [self, other]
                    .into_iter()
                    .map(|document| match &document.value {
                        Value::Array(elements) => {
                            elements.iter().map(Self::to_jsonb_text).collect()
                        }
                        _ => document.to_jsonb_text().map(|text| vec![text]),
                    })
                    .collect::<Result<Vec<_>, JsonError>>()?
                    .concat();
                format!("[{}]", elements.join(", "))
            }
        };
        // Parsed again, so that a key both objects have is kept once, with the later value.
        Document::parse(&joined)?.to_jsonb_text()
    }

    /// `jsonb`'s `-` with keys: an object without those keys, an array without the strings
    /// equal to one of them; a scalar is an error (22023).
    pub fn without_keys<S: AsRef<str>>(&self, keys: &[S]) -> Result<String, JsonError> {
        match &self.value {
            Value::Object(_) => Ok(format!("{{{}}}", self.member_texts(keys)?.join(", "))),
            Value::Array(elements) => {
                let mut kept = Vec::with_capacity(elements.len());
                for element in elements {
                    if let Value::String(text) = element.value {
                        let text = unescaped(text)?;
                        if keys.iter().any(|key| key.as_ref() == text) {
                            continue;
                        }
                    }
                    kept.push(element.to_jsonb_text()?);
                }
                Ok(format!("[{}]", kept.join(", ")))
            }
            _ => Err(JsonError::invalid("cannot delete from scalar")),
        }
    }

    /// `jsonb`'s `-` with an index: an array without that element (counted from the end when
    /// negative; the array as it is when there is no such element). An object or a scalar is
    /// an error (22023).
    pub fn without_element(&self, index: i64) -> Result<String, JsonError> {
        let elements = match &self.value {
            Value::Array(elements) => elements,
            Value::Object(_) => {
                return Err(JsonError::invalid(
                    "cannot delete from object using integer index",
                ));
            }
            _ => return Err(JsonError::invalid("cannot delete from scalar")),
        };
        let removed = match index {
            ..0 => elements.len().checked_sub(index.unsigned_abs() as usize),
            _ => usize::try_from(index).ok(),
        };
        let kept = elements
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != removed)
            .map(|(_, element)| element.to_jsonb_text())
            .collect::<Result<Vec<_>, JsonError>>()?;
        Ok(format!("[{}]", kept.join(", ")))
    }

    /// `jsonb_set`: the document with the value at `path` replaced by `new`, or, when only
    /// the last step finds nothing and `create`, added there (a key to its object; an index
    /// past an array's end appends, one before its start prepends). A path that stops short
    /// leaves the document as it is; a scalar document is an error (22023), as is an array
    /// step that is no integer (22P02) or is NULL (22004).
    pub fn with_value_at(
        &self,
        path: &[Option<String>],
        new: &Self,
        create: bool,
    ) -> Result<String, JsonError> {
        if !matches!(self.value, Value::Object(_) | Value::Array(_)) {
            return Err(JsonError::invalid("cannot set path in scalar"));
        }
        if let Some(position) = path.iter().position(Option::is_none) {
            return Err(JsonError {
                sqlstate: "22004",
                message: format!("path element at position {} is null", position + 1),
            });
        }
        let path: Vec<&str> = path.iter().flatten().map(String::as_str).collect();
        let mut out = String::new();
        self.write_with_value_at(&path, 0, new, create, &mut out)?;
        // Parsed again, so that a key added to an object takes its place among the others.
        Document::parse(&out)?.to_jsonb_text()
    }

    fn write_with_value_at(
        &self,
        path: &[&str],
        level: usize,
        new: &Self,
        create: bool,
        out: &mut String,
    ) -> Result<(), JsonError> {
        let Some(&step) = path.get(level) else {
            return self.write_jsonb(out);
        };
        let last = level + 1 == path.len();
        let write_found = |found: &Self, out: &mut String| match last {
            true => new.write_jsonb(out),
            false => found.write_with_value_at(path, level + 1, new, create, out),
        };
        match &self.value {
            Value::Object(_) => {
                let members = self.members()?;
                let mut items = Vec::with_capacity(members.len() + 1);
                for (key, value) in &members {
                    let mut item = String::new();
                    write_key(key, &mut item);
                    match key == step {
                        true => write_found(value, &mut item)?,
                        false => value.write_jsonb(&mut item)?,
                    }
                    items.push(item);
                }
                if last && create && !members.iter().any(|(key, _)| key == step) {
                    let mut item = String::new();
                    write_key(step, &mut item);
                    new.write_jsonb(&mut item)?;
                    items.push(item);
                }
                out.push_str(&format!("{{{}}}", items.join(", ")));
            }
            Value::Array(elements) => {
                let index = step.trim_start().parse::<i64>().map_err(|_| JsonError {
                    sqlstate: "22P02",
                    message: format!(
                        "path element at position {} is not an integer: \"{step}\"",
                        level + 1
                    ),
                })?;
                let length = elements.len() as i64;
                let at = if index < 0 { index + length } else { index };
                let mut items = Vec::with_capacity(elements.len() + 1);
                for (i, element) in elements.iter().enumerate() {
                    let mut item = String::new();
                    match i as i64 == at {
                        true => write_found(element, &mut item)?,
                        false => element.write_jsonb(&mut item)?,
                    }
                    items.push(item);
                }
                if last && create && !(0..length).contains(&at) {
                    let added = new.to_jsonb_text()?;
                    match at < 0 {
                        true => items.insert(0, added),
                        false => items.push(added),
                    }
                }
                out.push_str(&format!("[{}]", items.join(", ")));
            }
            _ => self.write_jsonb(out)?,
        }
        Ok(())
    }

    /// `json_array_length`: the number of an array's elements; an object or a scalar is an
    /// error (22023).
    pub fn array_length(&self) -> Result<usize, JsonError> {
        match &self.value {
            Value::Array(elements) => Ok(elements.len()),
            Value::Object(_) => Err(JsonError::invalid("cannot get array length of a non-array")),
            _ => Err(JsonError::invalid("cannot get array length of a scalar")),
        }
    }

    /// An object's members as `jsonb` prints them (`"key": value`), but those named in
    /// `leaving_out`.
    fn member_texts<S: AsRef<str>>(&self, leaving_out: &[S]) -> Result<Vec<String>, JsonError> {
        let mut texts = Vec::new();
        for (key, value) in self.members()? {
            if leaving_out.iter().any(|left| left.as_ref() == key) {
                continue;
            }
            let mut text = String::new();
            write_key(&key, &mut text);
            value.write_jsonb(&mut text)?;
            texts.push(text);
        }
        Ok(texts)
    }

    /// `jsonb`'s `@>`: this document contains `other` (PostgreSQL's rules: an object's
    /// members are contained in the other object's, an array's elements each in some element
    /// of the other array, a scalar equals; a top-level array also contains a scalar it holds).
    pub fn contains(&self, other: &Self) -> Result<bool, JsonError> {
        if let (Value::Array(elements), scalar) = (&self.value, &other.value)
            && !matches!(scalar, Value::Array(_) | Value::Object(_))
        {
            for element in elements {
                if element.contains_within(other)? {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        self.contains_within(other)
    }

    fn contains_within(&self, other: &Self) -> Result<bool, JsonError> {
        match (&self.value, &other.value) {
            (Value::Object(_), Value::Object(_)) => {
                for (key, wanted) in other.members()? {
                    match self.field(&key)? {
                        Some(held) if held.contains_within(wanted)? => {}
                        _ => return Ok(false),
                    }
                }
                Ok(true)
            }
            (Value::Array(held), Value::Array(wanted)) => {
                'wanted: for wanted in wanted {
                    for held in held {
                        if held.contains_within(wanted)? {
                            continue 'wanted;
                        }
                    }
                    return Ok(false);
                }
                Ok(true)
            }
            (Value::Null, Value::Null) => Ok(true),
            (Value::Bool(a), Value::Bool(b)) => Ok(a == b),
            (Value::Number(a), Value::Number(b)) => numbers_equal(a, b),
            (Value::String(a), Value::String(b)) => Ok(unescaped(a)? == unescaped(b)?),
            _ => Ok(false),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn skip_whitespace(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start_matches([' ', '\t', '\n', '\r']).len();
    }

    /// The token at the parse position, as an error names it.
    fn token(&self) -> &'a str {
        let rest = self.rest();
        let end = rest
            .char_indices()
            .find(|&(i, c)| i > 0 && !c.is_alphanumeric())
            .map_or(rest.len(), |(i, _)| i);
        &rest[..end]
    }

    fn unexpected(&self) -> JsonError {
        match self.rest().is_empty() {
            true => JsonError::syntax("the input string ended unexpectedly"),
            false => JsonError::syntax(format!("token \"{}\" is invalid", self.token())),
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        let found = self.rest().as_bytes().first() == Some(&byte);
        self.at += usize::from(found);
        found
    }

    fn value(&mut self, depth: usize) -> Result<Document<'a>, JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError {
                sqlstate: "54001",
                message: format!("JSON nests deeper than {MAX_DEPTH} arrays and objects"),
            });
        }
        self.skip_whitespace();
        let start = self.at;
        let value = match self.rest().as_bytes().first() {
            Some(b'{') => self.object(depth)?,
            Some(b'[') => self.array(depth)?,
            Some(b'"') => Value::String(self.string()?),
            Some(b'-' | b'0'..=b'9') => Value::Number(self.number()?),
            _ => match self.token() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => return Err(self.unexpected()),
            },
        };
        if matches!(value, Value::Bool(_) | Value::Null) {
            self.at += self.token().len();
        }
        Ok(Document {
            raw: &self.text[start..self.at],
            value,
        })
    }

    fn array(&mut self, depth: usize) -> Result<Value<'a>, JsonError> {
        self.at += 1;
        let mut elements = Vec::new();
        if self.eat(b']') {
            return Ok(Value::Array(elements));
        }
        loop {
            elements.push(self.value(depth + 1)?);
            if self.eat(b']') {
                return Ok(Value::Array(elements));
            }
            if !self.eat(b',') {
                return Err(self.unexpected());
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value<'a>, JsonError> {
        self.at += 1;
        let mut members = Vec::new();
        if self.eat(b'}') {
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.rest().as_bytes().first() != Some(&b'"') {
                return Err(self.unexpected());
            }
            let key = self.string()?;
            if !self.eat(b':') {
                return Err(self.unexpected());
            }
            members.push((key, self.value(depth + 1)?));
            if self.eat(b'}') {
                return Ok(Value::Object(members));
            }
            if !self.eat(b',') {
                return Err(self.unexpected());
            }
        }
    }

    /// A string's text between its quotes, its escapes checked.
    fn string(&mut self) -> Result<&'a str, JsonError> {
        self.at += 1;
        let start = self.at;
        let bytes = self.text.as_bytes();
        loop {
            match bytes.get(self.at) {
                None => return Err(self.unexpected()),
                Some(b'"') => break,
                Some(b'\\') => {
                    match bytes.get(self.at + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                        Some(b'u')
                            if bytes
                                .get(self.at + 2..self.at + 6)
                                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) =>
                        {
                            self.at += 4;
                        }
                        _ => {
                            self.at += 1;
                            return Err(JsonError::syntax(format!(
                                "escape sequence \"\\{}\" is invalid",
                                self.token()
                            )));
                        }
                    }
                    self.at += 2;
                }
                Some(&byte) if byte < 0x20 => {
                    return Err(JsonError::syntax(format!(
                        "character with value 0x{byte:02x} must be escaped"
                    )));
                }
                Some(_) => self.at += 1,
            }
        }
        self.at += 1;
        Ok(&self.text[start..self.at - 1])
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<&'a str, JsonError> {
        let start = self.at;
        let bytes = self.text.as_bytes();
        let digits = |at: &mut usize| {
            let from = *at;
            while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at > from
        };
        let mut at = self.at;
        at += usize::from(bytes[at] == b'-');
        let integer = at;
        // No leading zero before another digit.
        let mut valid = digits(&mut at) && (bytes[integer] != b'0' || at - integer == 1);
        if valid && bytes.get(at) == Some(&b'.') {
            at += 1;
            valid = digits(&mut at);
        }
        if valid && matches!(bytes.get(at), Some(b'e' | b'E')) {
            at += 1;
            at += usize::from(matches!(bytes.get(at), Some(b'+' | b'-')));
            valid = digits(&mut at);
        }
        // A number runs into no letter or digit (`1x`, `01` are one invalid token).
        if !valid || bytes.get(at).is_some_and(u8::is_ascii_alphanumeric) {
            return Err(self.unexpected());
        }
        self.at = at;
        Ok(&self.text[start..at])
    }
}

/// A string's text (as written between its quotes) with its escapes replaced.
fn unescaped(text: &str) -> Result<Cow<'_, str>, JsonError> {
    if !text.contains('\\') {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        // The parser checked every escape.
        let escaped = match chars.next().unwrap_or('\\') {
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let unit = hex_unit(&mut chars);
                let code = match unit {
                    0 => {
                        return Err(JsonError {
                            sqlstate: "22P05",
                            message: "unsupported Unicode escape sequence: \\u0000 cannot be \
                                      converted to text"
                                .to_owned(),
                        });
                    }
                    0xD800..=0xDBFF => {
                        let mut next = chars.clone();
                        let low = match (next.next(), next.next()) {
                            (Some('\\'), Some('u')) => hex_unit(&mut next),
                            _ => 0,
                        };
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(JsonError::syntax(
                                "a Unicode high surrogate must be followed by a low surrogate",
                            ));
                        }
                        chars = next;
                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => {
                        return Err(JsonError::syntax(
                            "a Unicode low surrogate must follow a high surrogate",
                        ));
                    }
                    unit => unit,
                };
                char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
            }
            other => other,
        };
        out.push(escaped);
    }
    Ok(Cow::Owned(out))
}

fn hex_unit(chars: &mut std::str::Chars) -> u32 {
    chars
        .take(4)
        .fold(0, |unit, c| unit * 16 + c.to_digit(16).unwrap_or(0))
}

/// An object member's key as `jsonb` prints it, up to its value: `"key": `.
fn write_key(key: &str, out: &mut String) {
    write_string(key, out);
    out.push_str(": ");
}

/// `text` as a JSON string, escaped as PostgreSQL escapes it.
pub(crate) fn write_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Exponents `numeric` input refuses from (PostgreSQL's `INT_MAX / 2`), and the digits it
/// holds before the point (nonzero values) and after it.
const MAX_EXPONENT: i64 = 1_073_741_823;
const MAX_INTEGER_DIGITS: i64 = 131_072;
const MAX_SCALE: i64 = 16_383;

/// A JSON number taken apart: its sign, its digits without leading zeros (none for zero),
/// where the decimal point falls in them (`point` digits before it; negative or past the end
/// means zeros) and its display scale.
struct Decimal {
    negative: bool,
    digits: String,
    point: i64,
    scale: i64,
}

impl Decimal {
    /// Reads a number the parser accepted, as `numeric` input does (`22003` beyond its range).
    fn of(text: &str) -> Result<Self, JsonError> {
        let overflow = || JsonError {
            sqlstate: "22003",
            message: format!("value overflows numeric format: {text}"),
        };
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            Some((mantissa, exponent)) => (
                mantissa,
                exponent
                    .trim_start_matches('+')
                    .parse::<i64>()
                    .ok()
                    .filter(|exponent| exponent.abs() < MAX_EXPONENT)
                    .ok_or_else(overflow)?,
            ),
            None => (unsigned, 0),
        };
        let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all = format!("{integer}{fraction}");
        let digits = all.trim_start_matches('0');
        let point = integer.len() as i64 - (all.len() - digits.len()) as i64 + exponent;
        let scale = (fraction.len() as i64 - exponent).max(0);
        if scale > MAX_SCALE || (!digits.is_empty() && point > MAX_INTEGER_DIGITS) {
            return Err(overflow());
        }
        Ok(Self {
            negative,
            digits: digits.to_owned(),
            point,
            scale,
        })
    }

    fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// The digit at `position` (0 is the first digit), zero outside the digits.
    fn digit(&self, position: i64) -> char {
        usize::try_from(position)
            .ok()
            .and_then(|i| self.digits.as_bytes().get(i).copied())
            .map_or('0', char::from)
    }

    /// The digits without trailing zeros, and the point: equal nonzero numbers share them.
    fn significant(&self) -> (&str, i64) {
        (self.digits.trim_end_matches('0'), self.point)
    }
}

/// A JSON number as `numeric` prints it: no exponent, the scale the text had
/// (`1.50` stays `1.50`, `1e2` is `100`, `1.5e-3` is `0.0015`, `-0` is `0`).
fn normalized_number(text: &str) -> Result<String, JsonError> {
    let decimal = Decimal::of(text)?;
    let mut out = String::new();
    if decimal.negative && !decimal.is_zero() {
        out.push('-');
    }
    match decimal.is_zero() || decimal.point <= 0 {
        true => out.push('0'),
        false => out.extend((0..decimal.point).map(|position| decimal.digit(position))),
    }
    if decimal.scale > 0 {
        out.push('.');
        out.extend(
            (decimal.point..decimal.point + decimal.scale).map(|position| decimal.digit(position)),
        );
    }
    Ok(out)
}

/// Whether two JSON numbers are equal in value (`1.0` and `1` are).
fn numbers_equal(a: &str, b: &str) -> Result<bool, JsonError> {
    let (a, b) = (Decimal::of(a)?, Decimal::of(b)?);
    Ok(match (a.is_zero(), b.is_zero()) {
        (true, true) => true,
        (false, false) => a.negative == b.negative && a.significant() == b.significant(),
        _ => false,
    })
}

/// The elements of a PostgreSQL text-array literal (`{a,"b c",NULL}`), as `#>`, `?|` and `?&`
/// take their right side; `None` for a NULL element.
pub fn text_array_elements(literal: &str) -> Result<Vec<Option<String>>, JsonError> {
    let malformed = || JsonError {
        sqlstate: "22P02",
        message: format!("malformed array literal: \"{literal}\""),
    };
    let inner = literal
        .trim()
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or_else(malformed)?;
    let mut elements = Vec::new();
    if inner.trim().is_empty() {
        return Ok(elements);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut element = String::new();
        let quoted = chars.next_if_eq(&'"').is_some();
        loop {
            match chars.peek().copied() {
                None if quoted => return Err(malformed()),
                None => break,
                Some('"') if quoted => {
                    chars.next();
                    break;
                }
                Some(',') if !quoted => break,
                Some('\\') => {
                    chars.next();
                    element.push(chars.next().ok_or_else(malformed)?);
                }
                Some(c) => {
                    chars.next();
                    element.push(c);
                }
            }
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if !quoted {
            element.truncate(element.trim_end().len());
            if element.is_empty() || element.contains(['{', '}', '"']) {
                return Err(malformed());
            }
        }
        let is_null = !quoted && element.eq_ignore_ascii_case("null");
        elements.push((!is_null).then_some(element));
        match chars.next() {
            None => return Ok(elements),
            Some(',') => {}
            Some(_) => return Err(malformed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jsonb(text: &str) -> String {
        Document::parse(text).unwrap().to_jsonb_text().unwrap()
    }

    #[test]
    fn jsonb_prints_as_postgresql_does() {
        assert_eq!(
            jsonb(r#" {"b": 1, "aa":[1,2 , {"z":null,"y":true}], "a": "x\u00e9\n", "b": 2} "#),
            r#"{"a": "xé\n", "b": 2, "aa": [1, 2, {"y": true, "z": null}]}"#
        );
        assert_eq!(jsonb("[]"), "[]");
        assert_eq!(jsonb("{}"), "{}");
        assert_eq!(jsonb(r#""a\/b\u0001""#), r#""a/b\u0001""#);
        assert_eq!(jsonb(r#""\ud83d\ude00""#), "\"😀\"");
    }

    #[test]
    fn numbers_print_as_numeric_does() {
        for (text, printed) in [
            ("1", "1"),
            ("-0", "0"),
            ("-0.0", "0.0"),
            ("1.50", "1.50"),
            ("1e2", "100"),
            ("1E+2", "100"),
            ("1.5e-3", "0.0015"),
            ("0.1e1", "1"),
            ("12.345e1", "123.45"),
            ("-120e-1", "-12.0"),
            ("0.000", "0.000"),
        ] {
            assert_eq!(normalized_number(text).unwrap(), printed, "{text}");
        }
        // numeric's limits, as PostgreSQL 15 answers them.
        assert_eq!(normalized_number("1e1001").unwrap().len(), 1002);
        assert_eq!(normalized_number("100e131069").unwrap().len(), 131_072);
        assert_eq!(normalized_number("0.0001e131072").unwrap().len(), 131_069);
        assert_eq!(normalized_number("0e200000").unwrap(), "0");
        assert_eq!(normalized_number("0.00e-16381").unwrap().len(), 16_385);
        for overflowing in [
            "100e131070",
            "1e-16384",
            "0e-20000",
            "0.00e-16382",
            "0e1073741823",
            "1e99999999999999999999",
        ] {
            let error = normalized_number(overflowing).unwrap_err();
            assert_eq!(error.sqlstate(), "22003", "{overflowing}");
        }
        assert!(numbers_equal("1.0", "1").unwrap());
        assert!(!numbers_equal("-2", "2").unwrap());
        assert!(!numbers_equal("12", "1.2").unwrap());
        assert!(numbers_equal("0.5", "5e-1").unwrap());
        assert!(numbers_equal("-0", "0.0").unwrap());
    }

    #[test]
    fn what_is_not_json_is_refused() {
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "tru",
            "nul",
            "\"a",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\nb\"",
            "{a:1}",
            "[1] 2",
            "NaN",
            "'a'",
            "1x",
        ] {
            let error = Document::parse(text).unwrap_err();
            assert_eq!(error.sqlstate(), "22P02", "{text:?}: {error}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 2), "]".repeat(MAX_DEPTH + 2));
        assert_eq!(Document::parse(&deep).unwrap_err().sqlstate(), "54001");
        // `json` keeps a \u0000 it need not read; text needs it unescaped.
        let nul = Document::parse(r#"["\u0000"]"#).unwrap();
        assert_eq!(nul.to_text(JsonType::Json).unwrap(), r#"["\u0000"]"#);
        assert_eq!(nul.to_jsonb_text().unwrap_err().sqlstate(), "22P05");
        let lone = Document::parse(r#""\udc00""#).unwrap();
        assert_eq!(lone.to_jsonb_text().unwrap_err().sqlstate(), "22P02");
    }

    #[test]
    fn fields_elements_and_paths() {
        let text = r#"{"a": {"b" : [10, "x", null]}, "k": 1, "k": 2}"#;
        let document = Document::parse(text).unwrap();
        let a = document.field("a").unwrap().unwrap();
        assert_eq!(
            a.to_text(JsonType::Json).unwrap(),
            r#"{"b" : [10, "x", null]}"#
        );
        assert_eq!(
            a.to_text(JsonType::Jsonb).unwrap(),
            r#"{"b": [10, "x", null]}"#
        );
        let k = document.field("k").unwrap().unwrap();
        assert_eq!(
            k.to_plain_text(JsonType::Json).unwrap().as_deref(),
            Some("2")
        );
        assert!(document.field("zz").unwrap().is_none());
        let path = |steps: &[&str]| {
            document
                .at_path(steps)
                .unwrap()
                .map(|found| found.to_plain_text(JsonType::Json).unwrap())
        };
        assert_eq!(path(&["a", "b", "1"]), Some(Some("x".to_owned())));
        assert_eq!(path(&["a", "b", "-3"]), Some(Some("10".to_owned())));
        assert_eq!(path(&["a", "b", "2"]), Some(None));
        assert_eq!(path(&["a", "b", "3"]), None);
        assert_eq!(path(&["a", "b", "x"]), None);
        assert_eq!(path(&["a", "b", " 1"]), Some(Some("x".to_owned())));
        assert_eq!(path(&["a", "b", "1 "]), None);
        assert_eq!(path(&["k", "x"]), None);
        assert_eq!(path(&[]).map(|_| ()), Some(()));
        let array = Document::parse("[1, 2, 3]").unwrap();
        assert_eq!(array.element(-1, JsonType::Json).unwrap().raw, "3");
        assert!(array.element(-4, JsonType::Json).is_none());
        assert!(array.element(3, JsonType::Json).is_none());
        assert!(document.element(0, JsonType::Jsonb).is_none());
        let scalar = Document::parse("\"s\"").unwrap();
        assert_eq!(scalar.element(-1, JsonType::Jsonb).unwrap().raw, "\"s\"");
        assert!(scalar.element(1, JsonType::Jsonb).is_none());
        assert!(scalar.element(0, JsonType::Json).is_none());
        assert!(scalar.at_path(&["0"]).unwrap().is_none());
    }

    #[test]
    fn containment_and_keys_follow_postgresql() {
        let holds = |a: &str, b: &str| {
            Document::parse(a)
                .unwrap()
                .contains(&Document::parse(b).unwrap())
                .unwrap()
        };
        assert!(holds(
            r#"{"a": 1, "b": {"c": [1, 2]}}"#,
            r#"{"b": {"c": [2]}}"#
        ));
        assert!(holds(r#"{"a": 1.0}"#, r#"{"a": 1}"#));
        assert!(!holds(r#"{"a": 1}"#, r#"{"a": 1, "b": 2}"#));
        assert!(holds("[1, 2, [3, 4]]", "[[4], 1]"));
        assert!(holds(r#"["foo", "bar"]"#, r#""foo""#));
        assert!(!holds(r#"[["foo"]]"#, r#""foo""#));
        assert!(!holds("[1, 2]", "[[1]]"));
        assert!(holds("{}", "{}"));
        assert!(!holds(r#"{"a": [1]}"#, r#"{"a": 1}"#));
        let keys = Document::parse(r#"{"a": 1, "b": null}"#).unwrap();
        assert!(keys.has_key("b").unwrap());
        assert!(!keys.has_key("c").unwrap());
        let strings = Document::parse(r#"["a", 1, {"b": 2}]"#).unwrap();
        assert!(strings.has_key("a").unwrap() && !strings.has_key("b").unwrap());
        assert!(Document::parse(r#""a""#).unwrap().has_key("a").unwrap());
    }

    #[test]
    fn concatenation_and_deletion_follow_postgresql() {
        let doc = |text| Document::parse(text).unwrap();
        let joined = |a, b| doc(a).concatenated(&doc(b)).unwrap();
        assert_eq!(
            joined(r#"{"b": 1, "a": 2}"#, r#"{"b": [3], "c": 4}"#),
            r#"{"a": 2, "b": [3], "c": 4}"#
        );
        assert_eq!(joined("[1, 2]", "[]"), "[1, 2]");
        assert_eq!(joined(r#"{"a": 1}"#, "1"), r#"[{"a": 1}, 1]"#);
        assert_eq!(joined(r#""x""#, r#"[{"a": 1}]"#), r#"["x", {"a": 1}]"#);
        let without = doc(r#"{"a": 1, "b": 2, "c": 3}"#);
        assert_eq!(
            without.without_keys(&["a", "c", "z"]).unwrap(),
            r#"{"b": 2}"#
        );
        let array = doc(r#"["a", 1, "a", "b"]"#);
        assert_eq!(array.without_keys(&["a"]).unwrap(), r#"[1, "b"]"#);
        assert_eq!(array.without_element(-1).unwrap(), r#"["a", 1, "a"]"#);
        assert_eq!(array.without_element(9).unwrap(), r#"["a", 1, "a", "b"]"#);
        assert_eq!(array.array_length().unwrap(), 4);
        for refused in [
            doc("1").without_keys(&["a"]),
            without.without_element(0),
            doc("null").without_element(0),
        ] {
            assert_eq!(refused.unwrap_err().sqlstate(), "22023");
        }
        assert_eq!(without.array_length().unwrap_err().sqlstate(), "22023");
    }

    #[test]
    fn set_follows_postgresql() {
        let doc = |text| Document::parse(text).unwrap();
        let set = |target, path: &[&str], new, create| {
            let path: Vec<Option<String>> = path.iter().map(|s| Some(s.to_string())).collect();
            doc(target).with_value_at(&path, &doc(new), create)
        };
        let nested = r#"{"b": {"c": [1, 2]}, "a": 1}"#;
        assert_eq!(
            set(nested, &["b", "c", "-1"], "9", true).unwrap(),
            r#"{"a": 1, "b": {"c": [1, 9]}}"#
        );
        assert_eq!(
            set(nested, &["aa"], "[]", true).unwrap(),
            r#"{"a": 1, "b": {"c": [1, 2]}, "aa": []}"#
        );
        assert_eq!(
            set(nested, &["aa"], "[]", false).unwrap(),
            doc(nested).to_jsonb_text().unwrap()
        );
        assert_eq!(
            set(nested, &["x", "y"], "1", true).unwrap(),
            doc(nested).to_jsonb_text().unwrap()
        );
        assert_eq!(set("[1, 2]", &["5"], "3", true).unwrap(), "[1, 2, 3]");
        assert_eq!(set("[1, 2]", &["-5"], "0", true).unwrap(), "[0, 1, 2]");
        assert_eq!(
            set("[1, 2]", &["a"], "0", true).unwrap_err().sqlstate(),
            "22P02"
        );
        assert_eq!(set("1", &["a"], "0", true).unwrap_err().sqlstate(), "22023");
        let null_step = doc("{}").with_value_at(&[None], &doc("1"), true);
        assert_eq!(null_step.unwrap_err().sqlstate(), "22004");
    }

    #[test]
    fn text_array_literals() {
        assert_eq!(
            text_array_elements(r#"{a, "b c" ,NULL,"NULL",d\,e}"#).unwrap(),
            vec![
                Some("a".to_owned()),
                Some("b c".to_owned()),
                None,
                Some("NULL".to_owned()),
                Some("d,e".to_owned())
            ]
        );
        assert!(text_array_elements("{}").unwrap().is_empty());
        for bad in ["a,b", "{a,,b}", "{\"a}", "{a}b", "{a b\"}"] {
            assert_eq!(
                text_array_elements(bad).unwrap_err().sqlstate(),
                "22P02",
                "{bad}"
            );
        }
    }
}
