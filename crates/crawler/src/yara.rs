//! YARA rules over crawled bodies, with yara-x (pure Rust YARA).

use std::path::{Path, PathBuf};
#[cfg(feature = "yara")]
use std::sync::Arc;
use std::time::Duration;

/// Compiled rules, shared by every scan.
#[derive(Clone)]
pub struct Rules {
    #[cfg(feature = "yara")]
    rules: Arc<yara_x::Rules>,
    count: usize,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rules({} rules)", self.count)
    }
}

impl Rules {
    /// Compiles every `*.yar` / `*.yara` file of the directories (sorted,
    /// not recursive), each file in a namespace named after it. A rule that
    /// does not compile is an error naming the file.
    pub fn load(dirs: &[PathBuf]) -> Result<Option<Rules>, String> {
        let mut files = Vec::new();
        for dir in dirs {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| format!("cannot read YARA rule directory {}: {e}", dir.display()))?;
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| {
                    x.eq_ignore_ascii_case("yar") || x.eq_ignore_ascii_case("yara")
                }) {
                    files.push(p);
                }
            }
        }
        files.sort();
        if files.is_empty() {
            return Ok(None);
        }
        let mut sources = Vec::with_capacity(files.len());
        for f in &files {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read YARA rules {}: {e}", f.display()))?;
            sources.push((f.clone(), text));
        }
        Rules::compile(sources.iter().map(|(p, t)| (p.as_path(), t.as_str()))).map(Some)
    }

    /// Compiles rule texts, each in a namespace named after its file.
    #[cfg(not(feature = "yara"))]
    pub fn compile<'a>(
        mut sources: impl Iterator<Item = (&'a Path, &'a str)>,
    ) -> Result<Rules, String> {
        match sources.next() {
            Some((p, _)) => Err(format!(
                "YARA rules {}: this kanki was built without YARA (feature `yara`)",
                p.display()
            )),
            None => Ok(Rules { count: 0 }),
        }
    }

    #[cfg(not(feature = "yara"))]
    pub fn scan(&self, _data: &[u8], _timeout: Duration) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    #[cfg(feature = "yara")]
    pub fn compile<'a>(
        sources: impl Iterator<Item = (&'a Path, &'a str)>,
    ) -> Result<Rules, String> {
        let mut compiler = yara_x::Compiler::new();
        for (path, text) in sources {
            let ns = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "rules".into());
            compiler.new_namespace(&ns);
            compiler
                .add_source(text)
                .map_err(|e| format!("YARA rules {}: {e}", path.display()))?;
        }
        let rules = compiler.build();
        let count = rules.iter().len();
        Ok(Rules {
            rules: Arc::new(rules),
            count,
        })
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The rules that match `data` (`namespace:rule`), or why the scan failed.
    #[cfg(feature = "yara")]
    pub fn scan(&self, data: &[u8], timeout: Duration) -> Result<Vec<String>, String> {
        let mut scanner = yara_x::Scanner::new(&self.rules);
        scanner.set_timeout(timeout);
        let results = scanner.scan(data).map_err(|e| match e {
            yara_x::errors::ScanError::Timeout => format!(
                "YARA scan stopped at its time limit of {}",
                humantime::format_duration(timeout)
            ),
            other => format!("YARA scan failed: {other}"),
        })?;
        Ok(results
            .matching_rules()
            .map(|r| format!("{}:{}", r.namespace(), r.identifier()))
            .collect())
    }
}

#[cfg(all(test, feature = "yara"))]
mod tests {
    use super::*;

    #[test]
    fn rules_match_and_bad_rules_name_their_file() {
        let rules = Rules::compile(
            [(
                Path::new("/r/kits.yar"),
                r#"rule fake_kit { strings: $a = "EXPLOIT-KIT-MARKER" condition: $a }"#,
            )]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules
                .scan(b"..EXPLOIT-KIT-MARKER..", Duration::from_secs(5))
                .unwrap(),
            vec!["kits:fake_kit".to_string()]
        );
        assert!(
            rules
                .scan(b"clean", Duration::from_secs(5))
                .unwrap()
                .is_empty()
        );
        let e =
            Rules::compile([(Path::new("/r/broken.yar"), "rule { nope")].into_iter()).unwrap_err();
        assert!(e.contains("broken.yar"), "{e}");
    }
}
