//! Synthetic reports for benchmarks and tests.

use std::fmt::Write;
use std::net::IpAddr;

/// A Shadowserver `event4_sinkhole` CSV of `sources.len()` rows: row `i`
/// is source `sources[i]` seen at unix second `at[i]`, infected with one
/// family among a few (the same for every row of an address), with the
/// report's full header.
pub fn sinkhole_csv(sources: &[(IpAddr, i64)]) -> Vec<u8> {
    const FAMILIES: [&str; 6] = [
        "mirai",
        "emotet",
        "qakbot",
        "andromeda",
        "conficker",
        "gamut",
    ];
    let mut s = String::with_capacity(sources.len() * 200 + 512);
    s.push_str("\"timestamp\",\"protocol\",\"src_ip\",\"src_port\",\"src_asn\",\"src_geo\",\"src_region\",\"src_city\",\"src_hostname\",\"src_naics\",\"src_sector\",\"device_vendor\",\"device_type\",\"device_model\",\"severity\",\"dst_ip\",\"dst_port\",\"dst_asn\",\"dst_geo\",\"dst_region\",\"dst_city\",\"dst_hostname\",\"dst_naics\",\"dst_sector\",\"public_source\",\"infection\",\"family\",\"tag\",\"application\",\"version\",\"event_id\",\"ssl_cipher\",\"ssl_servername\"\n");
    for (i, (ip, at)) in sources.iter().enumerate() {
        let t = chrono::DateTime::from_timestamp(*at, 0).unwrap_or_default();
        let octets = match ip {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let mixed = octets
            .iter()
            .fold(0u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        let fam = FAMILIES[(mixed % FAMILIES.len() as u64) as usize];
        let _ = writeln!(
            s,
            "\"{}\",\"tcp\",\"{ip}\",{},64500,\"JP\",\"TOKYO\",\"CHIYODA\",,,\"Communications, Service Provider, and Hosting Service\",,,,\"high\",\"198.51.100.{}\",80,64501,\"US\",\"CALIFORNIA\",\"SAN FRANCISCO\",,,,\"CWSandbox\",\"{fam}\",\"{fam}\",,\"http\",,,,",
            t.format("%Y-%m-%d %H:%M:%S"),
            1024 + (i % 60000),
            i % 250 + 1,
        );
    }
    s.into_bytes()
}
