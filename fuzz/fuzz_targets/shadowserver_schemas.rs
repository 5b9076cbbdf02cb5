#![no_main]
//! Operator-supplied Shadowserver schema files (`removal.shadowserver_schemas`):
//! the input is `intelmq.json`, a 0xFF byte, then `reports.json`. Schemas
//! that load are then used: a file name is matched against their types,
//! and a small report is read with each of the first few types.

use kanki_events::shadowserver::{Schemas, parse_shadowserver};
use libfuzzer_sys::fuzz_target;

const REPORT: &[u8] = b"timestamp,ip,src_ip,port,infection,family,tag,asn\n\
2024-05-01 10:00:00,192.0.2.7,192.0.2.7,80,mirai,mirai,botnet,64500\n\
2024-05-01 10:00:01,198.51.100.0/24\n";

fuzz_target!(|data: &[u8]| {
    let (intelmq, reports) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let (Ok(intelmq), Ok(reports)) = (std::str::from_utf8(intelmq), std::str::from_utf8(reports))
    else {
        return;
    };
    let Ok(schemas) = Schemas::load(intelmq, reports) else {
        return;
    };
    let types: Vec<String> = schemas.report_types().map(str::to_string).collect();
    assert_eq!(types.len(), schemas.len());
    for t in types.iter().take(4) {
        // A type named as Shadowserver names them is found in a file name.
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            let name = format!("2024-05-01-{t}-asn.csv");
            assert!(schemas.type_in_file_name(&name).is_some(), "{name}");
        }
        let schema = schemas.report(t).expect("a listed type");
        for extras in [false, true] {
            if let Ok((_, items)) = parse_shadowserver(
                schema.clone(),
                Box::new(std::io::Cursor::new(REPORT.to_vec())),
                extras,
            ) {
                items.for_each(drop);
            }
        }
    }
});
