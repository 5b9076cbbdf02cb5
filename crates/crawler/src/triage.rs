//! Payload triage: what a body is by its magic bytes (not by what the
//! server claims), its hash, what archives hold (nested, to a bounded
//! depth), and what the YARA rules and the known-bad hash lists say.
//!
//! The magic table is written here rather than taken from a MIME-sniffing
//! crate because the distinctions that matter for a verdict are below the
//! MIME type: an APK or a JAR is "a ZIP", an Office file with macros is "an
//! OLE file", a PDF with JavaScript is "a PDF".

use std::collections::HashSet;
use std::io::{Cursor, Read};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A body's type by its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Magic {
    Pe,
    Elf,
    MachO,
    Apk,
    Dex,
    Jar,
    JavaClass,
    Msi,
    /// An Office document (OLE or OOXML) with VBA macros.
    OfficeMacro,
    Office,
    /// A PDF with JavaScript or an action run on open.
    PdfJavascript,
    Pdf,
    Flash,
    Zip,
    Gzip,
    Rar,
    SevenZip,
    Cab,
    Html,
    Javascript,
    Text,
    Image,
    Empty,
    Unknown,
}

impl Magic {
    /// Code or a container of code that runs on the visitor's machine.
    pub fn is_executable_payload(self) -> bool {
        matches!(
            self,
            Magic::Pe
                | Magic::Elf
                | Magic::MachO
                | Magic::Apk
                | Magic::Dex
                | Magic::Jar
                | Magic::JavaClass
                | Magic::Msi
                | Magic::OfficeMacro
        )
    }

    /// A document format that exploit kits carry their exploits in.
    pub fn is_exploit_carrier(self) -> bool {
        matches!(self, Magic::PdfJavascript | Magic::Flash)
    }

    pub fn is_archive(self) -> bool {
        matches!(
            self,
            Magic::Zip | Magic::Gzip | Magic::Rar | Magic::SevenZip | Magic::Cab
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Magic::Pe => "pe",
            Magic::Elf => "elf",
            Magic::MachO => "mach-o",
            Magic::Apk => "apk",
            Magic::Dex => "dex",
            Magic::Jar => "jar",
            Magic::JavaClass => "java-class",
            Magic::Msi => "msi",
            Magic::OfficeMacro => "office-macro",
            Magic::Office => "office",
            Magic::PdfJavascript => "pdf-javascript",
            Magic::Pdf => "pdf",
            Magic::Flash => "flash",
            Magic::Zip => "zip",
            Magic::Gzip => "gzip",
            Magic::Rar => "rar",
            Magic::SevenZip => "7z",
            Magic::Cab => "cab",
            Magic::Html => "html",
            Magic::Javascript => "javascript",
            Magic::Text => "text",
            Magic::Image => "image",
            Magic::Empty => "empty",
            Magic::Unknown => "unknown",
        }
    }
}

/// Entries read from one archive, and bytes read from one entry, at most.
const MAX_ENTRIES: usize = 10_000;
const MAX_ENTRY_BYTES: u64 = 16 << 20;

/// What triage found in one body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triage {
    pub magic: Magic,
    pub sha256: String,
    pub size: u64,
    /// Executable payloads and exploit carriers found inside archives,
    /// as `path/in/archive: type`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inside: Vec<String>,
    /// YARA rules that matched (`namespace:rule`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub yara: Vec<String>,
    /// Whether the SHA-256 is on a known-bad list.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub known_bad: bool,
    /// Things that stopped triage short (an archive bomb, a YARA timeout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The type of a body by its first bytes, the `Content-Type` and the URL
/// path only breaking ties between text types.
pub fn magic(body: &[u8], content_type: Option<&str>, path: &str) -> Magic {
    let b = body;
    let starts = |m: &[u8]| b.starts_with(m);
    if b.is_empty() {
        return Magic::Empty;
    }
    if starts(b"MZ") {
        return Magic::Pe;
    }
    if starts(b"\x7fELF") {
        return Magic::Elf;
    }
    if starts(&[0xfe, 0xed, 0xfa, 0xce])
        || starts(&[0xfe, 0xed, 0xfa, 0xcf])
        || starts(&[0xce, 0xfa, 0xed, 0xfe])
        || starts(&[0xcf, 0xfa, 0xed, 0xfe])
    {
        return Magic::MachO;
    }
    if starts(&[0xca, 0xfe, 0xba, 0xbe]) {
        // Java class files and Mach-O fat binaries share a magic; a fat
        // binary has a small architecture count where a class file has
        // its version (45 and up).
        let n = b
            .get(4..8)
            .map_or(0, |x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]));
        return if n > 0 && n < 30 {
            Magic::MachO
        } else {
            Magic::JavaClass
        };
    }
    if starts(b"dex\n") {
        return Magic::Dex;
    }
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") {
        return Magic::Zip;
    }
    if starts(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) {
        return ole_kind(b);
    }
    if starts(b"%PDF-") {
        return if contains_any(b, &[b"/JavaScript", b"/JS", b"/OpenAction", b"/Launch"]) {
            Magic::PdfJavascript
        } else {
            Magic::Pdf
        };
    }
    if starts(b"FWS") || starts(b"CWS") || starts(b"ZWS") {
        return Magic::Flash;
    }
    if starts(&[0x1f, 0x8b]) {
        return Magic::Gzip;
    }
    if starts(b"Rar!\x1a\x07") {
        return Magic::Rar;
    }
    if starts(b"7z\xbc\xaf\x27\x1c") {
        return Magic::SevenZip;
    }
    if starts(b"MSCF") {
        return Magic::Cab;
    }
    if starts(b"\x89PNG")
        || starts(b"GIF8")
        || starts(&[0xff, 0xd8, 0xff])
        || (starts(b"RIFF") && b.get(8..12) == Some(b"WEBP"))
    {
        return Magic::Image;
    }
    let head = &b[..b.len().min(1024)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let t = text.trim_start_matches('\u{feff}').trim_start();
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    if t.starts_with("<!doctype html")
        || t.starts_with("<html")
        || [
            "<head", "<body", "<script", "<iframe", "<meta", "<title", "<div",
        ]
        .iter()
        .any(|m| t.contains(m))
    {
        return Magic::Html;
    }
    if ct.contains("javascript") || ct.contains("ecmascript") || path.ends_with(".js") {
        return Magic::Javascript;
    }
    if ct.contains("html") {
        return Magic::Html;
    }
    if head
        .iter()
        .all(|c| c.is_ascii_graphic() || c.is_ascii_whitespace() || *c >= 0x80)
    {
        return Magic::Text;
    }
    Magic::Unknown
}

fn contains_any(hay: &[u8], needles: &[&[u8]]) -> bool {
    needles
        .iter()
        .any(|n| memchr::memmem::find(hay, n).is_some())
}

/// An OLE compound file: an MSI, an Office document with or without macros.
fn ole_kind(b: &[u8]) -> Magic {
    // Stream names are UTF-16LE in the directory.
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect() };
    // The MSI database's class id {000C1084-0000-0000-C000-000000000046}.
    const MSI_CLSID: [u8; 16] = [
        0x84, 0x10, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x46,
    ];
    if memchr::memmem::find(b, &MSI_CLSID).is_some() {
        return Magic::Msi;
    }
    if memchr::memmem::find(b, &utf16("_VBA_PROJECT")).is_some()
        || memchr::memmem::find(b, &utf16("VBA")).is_some()
            && memchr::memmem::find(b, &utf16("Macros")).is_some()
    {
        return Magic::OfficeMacro;
    }
    Magic::Office
}

/// What a ZIP is: an APK, a JAR, an Office file (with or without macros),
/// or just an archive; and what it holds, opened `depth` levels deep.
fn zip_kind(
    body: &[u8],
    depth: u32,
    prefix: &str,
    inside: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Magic {
    let mut archive = match zip::ZipArchive::new(Cursor::new(body)) {
        Ok(a) => a,
        Err(e) => {
            notes.push(format!("{prefix}unreadable zip: {e}"));
            return Magic::Zip;
        }
    };
    let names: HashSet<String> = archive
        .file_names_raw()
        .take(MAX_ENTRIES)
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    if archive.len() > MAX_ENTRIES {
        notes.push(format!(
            "{prefix}zip of {} entries: read {MAX_ENTRIES}",
            archive.len()
        ));
    }
    let kind = if names.contains("AndroidManifest.xml") && names.iter().any(|n| n.ends_with(".dex"))
    {
        Magic::Apk
    } else if names.contains("META-INF/MANIFEST.MF") || names.iter().any(|n| n.ends_with(".class"))
    {
        Magic::Jar
    } else if names.contains("[Content_Types].xml") {
        if names.iter().any(|n| n.ends_with("vbaProject.bin")) {
            Magic::OfficeMacro
        } else {
            Magic::Office
        }
    } else {
        Magic::Zip
    };
    if kind != Magic::Zip || depth == 0 {
        if kind == Magic::Zip && depth == 0 && !names.is_empty() {
            notes.push(format!("{prefix}archive depth limit reached"));
        }
        return kind;
    }
    let mut budget: u64 = 64 << 20;
    for i in 0..archive.len().min(MAX_ENTRIES) {
        let Ok(mut f) = archive.by_index(i) else {
            continue;
        };
        if f.is_dir() {
            continue;
        }
        let name = String::from_utf8_lossy(f.name_raw()).into_owned();
        let want = f.size().min(MAX_ENTRY_BYTES).min(budget);
        let mut data = Vec::with_capacity(want.min(1 << 20) as usize);
        // `take` bounds what a lying header or a bomb can make us inflate.
        if let Err(e) = (&mut f).take(want).read_to_end(&mut data) {
            notes.push(format!("{prefix}{name}: {e}"));
            continue;
        }
        budget = budget.saturating_sub(data.len() as u64);
        if f.size() > want {
            notes.push(format!(
                "{prefix}{name}: {} bytes uncompressed, read {} (archive bomb limit)",
                f.size(),
                data.len()
            ));
        }
        let path = format!("{prefix}{name}");
        let m = magic(&data, None, &name);
        let m = if m == Magic::Zip {
            zip_kind(&data, depth - 1, &format!("{path}/"), inside, notes)
        } else {
            m
        };
        if m.is_executable_payload() || m.is_exploit_carrier() {
            inside.push(format!("{path}: {}", m.as_str()));
        }
        if budget == 0 {
            notes.push(format!("{prefix}stopped: 64 MiB read from the archive"));
            break;
        }
    }
    Magic::Zip
}

/// Known-bad SHA-256 hashes.
#[derive(Debug, Clone, Default)]
pub struct HashList {
    hashes: HashSet<[u8; 32]>,
}

impl HashList {
    /// Reads hash files: one SHA-256 (hex) a line, `#` comments; a line
    /// that is not a hash is counted, not fatal.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<(HashList, u64), String> {
        let mut list = HashList::default();
        let mut bad = 0;
        for p in paths {
            let p = p.as_ref();
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read hash list {}: {e}", p.display()))?;
            bad += list.add_text(&text);
        }
        Ok((list, bad))
    }

    /// Adds the hashes of a text; returns how many lines were not hashes.
    pub fn add_text(&mut self, text: &str) -> u64 {
        let mut bad = 0;
        for line in text.lines() {
            let l = line.split('#').next().unwrap_or("").trim();
            let l = l.split([' ', '\t', ',']).next().unwrap_or("");
            if l.is_empty() {
                continue;
            }
            let mut h = [0u8; 32];
            match hex::decode_to_slice(l, &mut h) {
                Ok(()) => {
                    self.hashes.insert(h);
                }
                Err(_) => bad += 1,
            }
        }
        bad
    }

    pub fn contains(&self, sha256: &[u8; 32]) -> bool {
        self.hashes.contains(sha256)
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// Everything triage needs besides the body: rules, lists, limits.
pub struct Triager {
    pub(crate) rules: Option<crate::yara::Rules>,
    pub(crate) known_bad: HashList,
    pub(crate) archive_depth: u32,
    pub(crate) yara_timeout: Duration,
}

impl Triager {
    pub fn new(
        rules: Option<crate::yara::Rules>,
        known_bad: HashList,
        archive_depth: u32,
        yara_timeout: Duration,
    ) -> Self {
        Triager {
            rules,
            known_bad,
            archive_depth,
            yara_timeout,
        }
    }

    /// Triage without rules or lists (the fuzz target's and tests').
    pub fn plain(archive_depth: u32) -> Self {
        Triager::new(
            None,
            HashList::default(),
            archive_depth,
            Duration::from_secs(5),
        )
    }

    pub fn triage(&self, body: &[u8], content_type: Option<&str>, path: &str) -> Triage {
        let digest: [u8; 32] = Sha256::digest(body).into();
        let mut t = Triage {
            magic: magic(body, content_type, path),
            sha256: hex::encode(digest),
            size: body.len() as u64,
            inside: Vec::new(),
            yara: Vec::new(),
            known_bad: self.known_bad.contains(&digest),
            notes: Vec::new(),
        };
        if t.magic == Magic::Zip {
            t.magic = zip_kind(body, self.archive_depth, "", &mut t.inside, &mut t.notes);
        }
        if t.magic == Magic::Gzip {
            // One gzip layer: what is inside decides (a .tar.gz is left as gzip).
            let mut inner = Vec::new();
            let _ = flate2::read::GzDecoder::new(body)
                .take(MAX_ENTRY_BYTES)
                .read_to_end(&mut inner);
            let m = magic(&inner, None, path.trim_end_matches(".gz"));
            if m.is_executable_payload() || m.is_exploit_carrier() {
                t.inside.push(format!("gzip: {}", m.as_str()));
            }
        }
        if let Some(rules) = &self.rules {
            match rules.scan(body, self.yara_timeout) {
                Ok(hits) => t.yara = hits,
                Err(e) => t.notes.push(e),
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn types_by_content() {
        assert_eq!(
            magic(b"MZ\x90\x00", Some("text/html"), "/a.html"),
            Magic::Pe
        );
        assert_eq!(magic(b"\x7fELF\x02", None, "/"), Magic::Elf);
        assert_eq!(magic(b"dex\n035\0", None, "/"), Magic::Dex);
        assert_eq!(
            magic(b"%PDF-1.4 /OpenAction /JS", None, "/"),
            Magic::PdfJavascript
        );
        assert_eq!(magic(b"%PDF-1.4 plain", None, "/"), Magic::Pdf);
        assert_eq!(magic(b"<!DOCTYPE html><p>", None, "/"), Magic::Html);
        assert_eq!(
            magic(b"var a=1;", Some("application/javascript"), "/"),
            Magic::Javascript
        );
        assert_eq!(
            magic(b"\xca\xfe\xba\xbe\x00\x00\x00\x34", None, "/"),
            Magic::JavaClass
        );
        assert_eq!(magic(b"", None, "/"), Magic::Empty);
        assert_eq!(magic(b"\xcf\xfa\xed\xfe\x07\x00", None, "/"), Magic::MachO);
        // A Mach-O fat binary of 2 architectures, not a class file.
        assert_eq!(
            magic(b"\xca\xfe\xba\xbe\x00\x00\x00\x02", None, "/"),
            Magic::MachO
        );
        // OLE compound files: an MSI by its class id, Office with a VBA
        // project stream, Office without.
        let ole = |rest: &[u8]| {
            let mut b = vec![0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1];
            b.extend_from_slice(&[0; 56]);
            b.extend_from_slice(rest);
            b
        };
        let msi_clsid = [
            0x84, 0x10, 0x0c, 0, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0x46,
        ];
        assert_eq!(magic(&ole(&msi_clsid), None, "/"), Magic::Msi);
        let vba: Vec<u8> = "_VBA_PROJECT"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(magic(&ole(&vba), None, "/x.doc"), Magic::OfficeMacro);
        assert_eq!(magic(&ole(b"WordDocument"), None, "/x.doc"), Magic::Office);
    }

    #[test]
    fn zips_are_told_apart_and_opened() {
        let t = Triager::plain(3);
        let apk = zip_of(&[
            ("AndroidManifest.xml", b"<x/>"),
            ("classes.dex", b"dex\n035\0"),
        ]);
        assert_eq!(t.triage(&apk, None, "/a.apk").magic, Magic::Apk);
        let jar = zip_of(&[("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n")]);
        assert_eq!(t.triage(&jar, None, "/a.jar").magic, Magic::Jar);
        let docm = zip_of(&[
            ("[Content_Types].xml", b"<x/>"),
            ("word/vbaProject.bin", b"x"),
        ]);
        assert_eq!(t.triage(&docm, None, "/").magic, Magic::OfficeMacro);
        // A PE two archives deep.
        let inner = zip_of(&[("setup.exe", b"MZ\x90\x00payload")]);
        let outer = zip_of(&[("readme.txt", b"hello"), ("inner.zip", &inner)]);
        let tr = t.triage(&outer, None, "/x.zip");
        assert_eq!(tr.magic, Magic::Zip);
        assert_eq!(tr.inside, vec!["inner.zip/setup.exe: pe".to_string()]);
        // Not deeper than the limit.
        let tr = Triager::plain(1).triage(&outer, None, "/x.zip");
        assert!(tr.inside.is_empty());
        assert!(
            tr.notes.iter().any(|n| n.contains("depth limit")),
            "{:?}",
            tr.notes
        );
    }

    #[test]
    fn hash_lists_count_bad_lines() {
        let mut l = HashList::default();
        let h = hex::encode(Sha256::digest(b"evil"));
        let bad = l.add_text(&format!("# list\n{h}  evil.exe\nnot-a-hash\n\n"));
        assert_eq!(bad, 1);
        assert!(l.contains(&Sha256::digest(b"evil").into()));
        assert!(
            Triager::new(None, l, 1, Duration::from_secs(1))
                .triage(b"evil", None, "/")
                .known_bad
        );
    }
}
