//! Splitting one CSV line into fields, and finding columns by name.
//!
//! Every binding CSV has one record per line (no value of these formats
//! can hold a line break), which keeps memory bounded however broken the
//! quoting of a file is. A line without a `"` is split on commas directly;
//! a line with quotes goes through the `csv` crate (RFC 4180 quoting).

/// The fields of the last line split, as byte ranges into that line or
/// into an unescaped copy of it.
#[derive(Default)]
pub(crate) struct Fields {
    spans: Vec<(usize, usize)>,
    unquoted: String,
    quoted: bool,
}

impl Fields {
    /// Splits `line` on commas; with `quoting`, fields may be quoted
    /// (`""` is a quote inside quotes). Without it (Kea, which escapes
    /// commas as `&#x2c` instead) a `"` is an ordinary character.
    pub(crate) fn split(&mut self, line: &str, quoting: bool) -> Result<(), &'static str> {
        self.spans.clear();
        self.quoted = false;
        if !quoting || !line.contains('"') {
            let mut start = 0;
            for i in memchr::memchr_iter(b',', line.as_bytes()) {
                self.spans.push((start, i));
                start = i + 1;
            }
            self.spans.push((start, line.len()));
            return Ok(());
        }
        if line.bytes().filter(|&b| b == b'"').count() % 2 != 0 {
            return Err("bad quoting");
        }
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(line.as_bytes());
        let mut rec = csv::StringRecord::new();
        match rdr.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => {
                self.spans.push((0, 0));
                return Ok(());
            }
            Err(_) => return Err("bad quoting"),
        }
        // A stray carriage return inside the line would start a second
        // record: the line is not one clean record.
        if !matches!(rdr.read_record(&mut csv::StringRecord::new()), Ok(false)) {
            return Err("bad quoting");
        }
        self.quoted = true;
        self.unquoted.clear();
        for field in rec.iter() {
            let start = self.unquoted.len();
            self.unquoted.push_str(field);
            self.spans.push((start, self.unquoted.len()));
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Field `i` of `line` (the line last split), trimmed; `None` if the
    /// line has no such field or it is empty.
    pub(crate) fn get<'a>(&'a self, line: &'a str, i: usize) -> Option<&'a str> {
        let &(a, b) = self.spans.get(i)?;
        let src = if self.quoted {
            self.unquoted.as_str()
        } else {
            line
        };
        let v = src.get(a..b)?.trim_ascii();
        (!v.is_empty()).then_some(v)
    }

    /// [`Fields::get`] for an optional column.
    pub(crate) fn opt<'a>(&'a self, line: &'a str, i: Option<usize>) -> Option<&'a str> {
        i.and_then(|i| self.get(line, i))
    }
}

/// Column names of a header line, lowercased and trimmed.
pub(crate) struct Header {
    names: Vec<String>,
}

impl Header {
    pub(crate) fn new(fields: &Fields, line: &str) -> Header {
        Header {
            names: (0..fields.len())
                .map(|i| fields.get(line, i).unwrap_or("").to_ascii_lowercase())
                .collect(),
        }
    }

    /// The position of the column called `name`.
    pub(crate) fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str, quoting: bool) -> Result<Vec<Option<String>>, &'static str> {
        let mut f = Fields::default();
        f.split(line, quoting)?;
        Ok((0..f.len())
            .map(|i| f.get(line, i).map(str::to_string))
            .collect())
    }

    #[test]
    fn plain_and_quoted() {
        assert_eq!(
            split("a, b ,,", true).unwrap(),
            vec![Some("a".into()), Some("b".into()), None, None]
        );
        assert_eq!(
            split(r#""x, y","say ""hi""",z"#, true).unwrap(),
            vec![
                Some("x, y".into()),
                Some(r#"say "hi""#.into()),
                Some("z".into())
            ]
        );
        assert_eq!(split(r#""open,b"#, true), Err("bad quoting"));
        assert_eq!(split("a\rb,\"c\"", true), Err("bad quoting"));
        // Without quoting, quotes are data (Kea's user_context is JSON).
        assert_eq!(
            split(r#"{ "a": 1 },x"#, false).unwrap(),
            vec![Some(r#"{ "a": 1 }"#.into()), Some("x".into())]
        );
    }
}
