//! The DNS front's message handling on its hot path: reading a query's
//! header, question and OPT record; writing policy and error answers;
//! finding the TTLs of an upstream response so a cached copy can age.
//!
//! Written by hand rather than with hickory-proto's `Message`: a full
//! decode and encode allocates per record and costs several microseconds,
//! while a forwarder that must keep up with Unbound only needs the
//! question, the OPT record and the TTL positions. The tests check every
//! answer written here by parsing it back with hickory-proto.

/// An EDNS(0) OPT record's facts (RFC 6891).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub dnssec_ok: bool,
    pub version: u8,
}

/// A query as read from the wire; borrows the packet.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub id: u16,
    /// The header's second 16 bits (QR, opcode, AA, TC, RD, RA, Z, rcode).
    pub flags: u16,
    /// The question name in wire form, as sent (case kept).
    pub qname: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    /// Offset just past the question.
    pub question_end: usize,
    pub edns: Option<Edns>,
}

impl Query<'_> {
    /// The largest response the client takes over UDP.
    pub fn udp_limit(&self) -> usize {
        self.edns
            .map_or(512, |e| e.udp_size.clamp(512, 4096) as usize)
    }

    pub fn recursion_desired(&self) -> bool {
        self.flags & 0x0100 != 0
    }

    /// CD: the client asks for data its resolver has not validated.
    pub fn checking_disabled(&self) -> bool {
        self.flags & 0x0010 != 0
    }

    /// AD in a query: the client understands the AD bit (RFC 6840 §5.7).
    pub fn authentic_data(&self) -> bool {
        self.flags & 0x0020 != 0
    }

    /// The question as sent: name, type and class in wire form.
    pub fn question<'p>(&self, packet: &'p [u8]) -> &'p [u8] {
        &packet[12..self.question_end]
    }
}

/// Why a packet is not a query we answer normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Not even a header, or a response (QR set): dropped, never answered
    /// (answering responses is how reflection loops start).
    Drop,
    /// Answered with this response code (FORMERR, NOTIMP, BADVERS...).
    Answer(u16),
}

pub const RCODE_FORMERR: u16 = 1;
pub const RCODE_SERVFAIL: u16 = 2;
pub const RCODE_NOTIMP: u16 = 4;
pub const RCODE_REFUSED: u16 = 5;
/// Extended (OPT) response code 16, BADVERS.
pub const RCODE_BADVERS: u16 = 16;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads a query. Only standard queries (opcode 0) with one question and
/// no answer or authority records are answered; the only additional record
/// read is OPT.
pub fn parse_query(b: &[u8]) -> Result<Query<'_>, Malformed> {
    if b.len() < 12 {
        return Err(Malformed::Drop);
    }
    let id = u16::from_be_bytes([b[0], b[1]]);
    let flags = u16::from_be_bytes([b[2], b[3]]);
    if flags & 0x8000 != 0 {
        return Err(Malformed::Drop);
    }
    if (flags >> 11) & 0xf != 0 {
        return Err(Malformed::Answer(RCODE_NOTIMP));
    }
    let counts = [
        u16_at(b, 4).unwrap_or(0),
        u16_at(b, 6).unwrap_or(0),
        u16_at(b, 8).unwrap_or(0),
        u16_at(b, 10).unwrap_or(0),
    ];
    if counts[0] != 1 || counts[1] != 0 || counts[2] != 0 || counts[3] > 1 {
        return Err(Malformed::Answer(RCODE_FORMERR));
    }
    let name_end = skip_name(b, 12, false).ok_or(Malformed::Answer(RCODE_FORMERR))?;
    let qtype = u16_at(b, name_end).ok_or(Malformed::Answer(RCODE_FORMERR))?;
    let qclass = u16_at(b, name_end + 2).ok_or(Malformed::Answer(RCODE_FORMERR))?;
    let question_end = name_end + 4;
    let mut q = Query {
        id,
        flags,
        qname: &b[12..name_end],
        qtype,
        qclass,
        question_end,
        edns: None,
    };
    if counts[3] == 1 {
        // The OPT record: root name, type 41, class = UDP size, TTL =
        // extended rcode, version, flags; then its options, skipped.
        let at = question_end;
        if b.get(at) != Some(&0) || u16_at(b, at + 1) != Some(TYPE_OPT) {
            return Err(Malformed::Answer(RCODE_FORMERR));
        }
        let udp_size = u16_at(b, at + 3).ok_or(Malformed::Answer(RCODE_FORMERR))?;
        let version = *b.get(at + 6).ok_or(Malformed::Answer(RCODE_FORMERR))?;
        let ext_flags = u16_at(b, at + 7).ok_or(Malformed::Answer(RCODE_FORMERR))?;
        let rdlen = u16_at(b, at + 9).ok_or(Malformed::Answer(RCODE_FORMERR))? as usize;
        if at + 11 + rdlen != b.len() || !options_well_formed(&b[at + 11..]) {
            return Err(Malformed::Answer(RCODE_FORMERR));
        }
        q.edns = Some(Edns {
            udp_size,
            dnssec_ok: ext_flags & 0x8000 != 0,
            version,
        });
        if version != 0 {
            return Err(Malformed::Answer(RCODE_BADVERS));
        }
    } else if question_end != b.len() {
        return Err(Malformed::Answer(RCODE_FORMERR));
    }
    if qclass != CLASS_IN {
        return Err(Malformed::Answer(RCODE_REFUSED));
    }
    Ok(q)
}

fn options_well_formed(mut opts: &[u8]) -> bool {
    while !opts.is_empty() {
        let Some(len) = u16_at(opts, 2) else {
            return false;
        };
        let Some(rest) = opts.get(4 + len as usize..) else {
            return false;
        };
        opts = rest;
    }
    true
}

/// The offset just past the name at `at`. In a question compression is
/// refused; in a response a pointer ends the name.
fn skip_name(b: &[u8], mut at: usize, pointers: bool) -> Option<usize> {
    let mut total = 0usize;
    loop {
        let len = *b.get(at)? as usize;
        match len {
            0 => return Some(at + 1),
            1..=63 => {
                total += len + 1;
                if total > 254 {
                    return None;
                }
                at += 1 + len;
                if at > b.len() {
                    return None;
                }
            }
            0xc0..=0xff if pointers => {
                b.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
    }
}

/// The question name as lower-case dotted text without the final dot, in
/// `out`; `None` for a name with a byte that is not a letter, digit, `-`,
/// `_` or `*` (such names are never listed, and are forwarded as they are).
pub fn dotted<'o>(qname: &[u8], out: &'o mut [u8; 256]) -> Option<&'o [u8]> {
    let mut n = 0;
    let mut at = 0;
    while let Some(&len) = qname.get(at) {
        if len == 0 {
            break;
        }
        if n > 0 {
            out[n] = b'.';
            n += 1;
        }
        for &c in qname.get(at + 1..at + 1 + len as usize)? {
            if !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'*') {
                return None;
            }
            *out.get_mut(n)? = c.to_ascii_lowercase();
            n += 1;
        }
        at += 1 + len as usize;
    }
    Some(&out[..n])
}

/// The header of an answer to `q`: its id, QR and RA set, its opcode and
/// RD kept, and `rcode` (its low four bits).
fn answer_header(out: &mut Vec<u8>, q_id: u16, q_flags: u16, rcode: u16, counts: [u16; 4]) {
    out.extend_from_slice(&q_id.to_be_bytes());
    let flags = 0x8000 | (q_flags & 0x7900) | 0x0080 | (rcode & 0xf);
    out.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
}

/// Writes an Extended DNS Error's text straight into the answer.
type EdeText<'a> = &'a mut dyn FnMut(&mut Vec<u8>);

/// An OPT record of ours: UDP size 1232 (the DNS flag day's), the
/// extended rcode bits, and an Extended DNS Error option when given: its
/// code, and a writer of its text (UTF-8, cut at 400 bytes), which writes
/// straight into `out`.
fn opt_record(out: &mut Vec<u8>, rcode: u16, dnssec_ok: bool, ede: Option<(u16, EdeText<'_>)>) {
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&1232u16.to_be_bytes());
    out.push((rcode >> 4) as u8);
    out.push(0);
    out.extend_from_slice(&(if dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
    match ede {
        None => out.extend_from_slice(&0u16.to_be_bytes()),
        Some((code, text)) => {
            // RFC 8914: option 15, INFO-CODE, EXTRA-TEXT; the lengths are
            // filled in once the text is written.
            let rdlen_at = out.len();
            out.extend_from_slice(&[0, 0, 0, 15, 0, 0]);
            out.extend_from_slice(&code.to_be_bytes());
            let text_at = out.len();
            text(out);
            out.truncate(text_at + 400);
            let text_len = (out.len() - text_at) as u16;
            out[rdlen_at..rdlen_at + 2].copy_from_slice(&(4 + 2 + text_len).to_be_bytes());
            out[rdlen_at + 4..rdlen_at + 6].copy_from_slice(&(2 + text_len).to_be_bytes());
        }
    }
}

/// An error answer: the question echoed when it could be read, an OPT
/// record when the query had one (or when the code needs one, BADVERS).
pub fn error_answer(packet: &[u8], rcode: u16) -> Option<Vec<u8>> {
    if packet.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    let mut out = Vec::with_capacity(64);
    // The question, if it reads; the OPT, if the query had a sound one.
    let question =
        skip_name(packet, 12, false).filter(|&e| e + 4 <= packet.len() && packet[5] == 1);
    let edns = match parse_query(packet) {
        Ok(q) => q.edns,
        Err(_) => None,
    };
    let with_opt = edns.is_some() || rcode > 15;
    answer_header(
        &mut out,
        id,
        flags,
        rcode,
        [u16::from(question.is_some()), 0, 0, u16::from(with_opt)],
    );
    if let Some(end) = question {
        out.extend_from_slice(&packet[12..end + 4]);
    }
    if with_opt {
        opt_record(&mut out, rcode, edns.is_some_and(|e| e.dnssec_ok), None);
    }
    Some(out)
}

/// The warning answer, written into `out` (cleared first): A or AAAA of
/// the warning address for those types, NODATA for others, TTL `ttl`, and
/// (when the query has EDNS) an Extended DNS Error `ede_code` whose text
/// `ede_text` writes.
#[allow(clippy::too_many_arguments)]
pub fn warning_answer(
    out: &mut Vec<u8>,
    packet: &[u8],
    q: &Query<'_>,
    v4: std::net::Ipv4Addr,
    v6: std::net::Ipv6Addr,
    ttl: u32,
    ede_code: u16,
    mut ede_text: impl FnMut(&mut Vec<u8>),
) {
    out.clear();
    let (v4, v6) = (v4.octets(), v6.octets());
    let rdata: Option<(u16, &[u8])> = match q.qtype {
        TYPE_A => Some((TYPE_A, &v4)),
        TYPE_AAAA => Some((TYPE_AAAA, &v6)),
        _ => None,
    };
    answer_header(
        out,
        q.id,
        q.flags,
        0,
        [
            1,
            u16::from(rdata.is_some()),
            0,
            u16::from(q.edns.is_some()),
        ],
    );
    out.extend_from_slice(&packet[12..q.question_end]);
    if let Some((rtype, data)) = rdata {
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
    }
    if let Some(e) = q.edns {
        opt_record(out, 0, e.dnssec_ok, Some((ede_code, &mut ede_text)));
    }
}

/// A truncated answer (TC set, question only), for a UDP response too
/// large for the client: it asks again over TCP. Written into `out`
/// (cleared first).
pub fn truncated_answer(out: &mut Vec<u8>, packet: &[u8], q: &Query<'_>) {
    out.clear();
    answer_header(
        out,
        q.id,
        q.flags | 0x0200,
        0,
        [1, 0, 0, u16::from(q.edns.is_some())],
    );
    out[2] |= 0x02;
    out.extend_from_slice(&packet[12..q.question_end]);
    if let Some(e) = q.edns {
        opt_record(out, 0, e.dnssec_ok, None);
    }
}

/// Whether `reply` answers the query sent with `id` and `question` (the
/// question section as sent: name, type, class): a response (QR set) to a
/// standard query, with that id, exactly one question, and that question
/// (the name in any case). Where it came from is the caller's check.
pub fn reply_answers(reply: &[u8], id: u16, question: &[u8]) -> bool {
    if question.len() < 5 {
        return false;
    }
    let end = 12 + question.len();
    reply.len() >= end
        && u16::from_be_bytes([reply[0], reply[1]]) == id
        && reply[2] & 0x80 != 0
        && (reply[2] >> 3) & 0xf == 0
        && u16_at(reply, 4) == Some(1)
        && reply[12..end - 4].eq_ignore_ascii_case(&question[..question.len() - 4])
        && reply[end - 4..end] == question[question.len() - 4..]
        // The name in the reply ends where the question's does: no label
        // of the reply's may swallow the type and class.
        && skip_name(reply, 12, false) == Some(end - 4)
}

/// What a cache needs of an upstream response: its rcode, whether it is
/// truncated, the smallest TTL of its records (OPT aside) and where each
/// TTL is, so a copy served later can be aged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseFacts {
    pub rcode: u16,
    pub truncated: bool,
    pub min_ttl: Option<u32>,
    pub ttl_offsets: Vec<u16>,
}

/// Reads an upstream response that answers `q` (same question, any case);
/// `None` when it does not parse or answers something else.
pub fn response_facts(b: &[u8], q: &Query<'_>) -> Option<ResponseFacts> {
    if b.len() < 12 || b[2] & 0x80 == 0 {
        return None;
    }
    let flags = u16::from_be_bytes([b[2], b[3]]);
    let qd = u16_at(b, 4)?;
    let rrs = u16_at(b, 6)? as usize + u16_at(b, 8)? as usize + u16_at(b, 10)? as usize;
    if qd != 1 {
        return None;
    }
    let name_end = skip_name(b, 12, false)?;
    if !b[12..name_end].eq_ignore_ascii_case(q.qname)
        || u16_at(b, name_end)? != q.qtype
        || u16_at(b, name_end + 2)? != q.qclass
    {
        return None;
    }
    let mut at = name_end + 4;
    let mut facts = ResponseFacts {
        rcode: flags & 0xf,
        truncated: flags & 0x0200 != 0,
        min_ttl: None,
        ttl_offsets: Vec::new(),
    };
    for _ in 0..rrs {
        at = skip_name(b, at, true)?;
        let rtype = u16_at(b, at)?;
        let ttl_at = at + 4;
        let ttl = u32::from_be_bytes(b.get(ttl_at..ttl_at + 4)?.try_into().ok()?);
        let rdlen = u16_at(b, at + 8)? as usize;
        at += 10 + rdlen;
        if at > b.len() {
            return None;
        }
        if rtype != TYPE_OPT {
            facts.min_ttl = Some(facts.min_ttl.map_or(ttl, |m| m.min(ttl)));
            facts.ttl_offsets.push(u16::try_from(ttl_at).ok()?);
        }
    }
    Some(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode, Query as HQuery, ResponseCode};
    use hickory_proto::rr::{Name, RData, RecordType};

    fn query(name: &str, t: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(HQuery::query(Name::from_ascii(name).unwrap(), t));
        if edns {
            let mut e = hickory_proto::op::Edns::new();
            e.set_max_payload(1232);
            e.set_dnssec_ok(true);
            m.edns = Some(e);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn a_query_reads_and_the_warning_answer_parses_back_with_its_ede() {
        let pkt = query("WWW.Bad.Example.", RecordType::A, true);
        let q = parse_query(&pkt).unwrap();
        assert_eq!((q.id, q.qtype), (4242, TYPE_A));
        assert_eq!(q.udp_limit(), 1232);
        let mut buf = [0u8; 256];
        assert_eq!(dotted(q.qname, &mut buf).unwrap(), b"www.bad.example");
        let mut ans = Vec::new();
        warning_answer(
            &mut ans,
            &pkt,
            &q,
            "192.0.2.80".parse().unwrap(),
            "2001:db8::80".parse().unwrap(),
            60,
            17,
            |o| o.extend_from_slice(b"kanki indicator 7"),
        );
        let m = Message::from_vec(&ans).unwrap();
        assert_eq!(m.metadata.id, 4242);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.recursion_available && m.metadata.recursion_desired);
        assert_eq!(m.queries[0].name.to_ascii(), "WWW.Bad.Example.");
        let rec = &m.answers[0];
        assert_eq!(rec.ttl, 60);
        assert_eq!(rec.data, RData::A("192.0.2.80".parse().unwrap()));
        let edns = m.edns.as_ref().unwrap();
        assert!(edns.flags().dnssec_ok);
        // The OPT ends with option 15 (EDE): length, INFO-CODE 17, text.
        let text = b"kanki indicator 7";
        let mut ede = vec![0, 15, 0, 2 + text.len() as u8, 0, 17];
        ede.extend_from_slice(text);
        assert!(ans.ends_with(&ede));
        // NODATA for other types; facts of an answer read back.
        let pkt = query("bad.example.", RecordType::MX, false);
        let q = parse_query(&pkt).unwrap();
        warning_answer(
            &mut ans,
            &pkt,
            &q,
            [0; 4].into(),
            [0; 16].into(),
            60,
            17,
            |o| o.push(b'x'),
        );
        let m = Message::from_vec(&ans).unwrap();
        assert!(m.answers.is_empty() && m.edns.is_none());
        let f = response_facts(&ans, &q).unwrap();
        assert_eq!((f.rcode, f.min_ttl), (0, None));
    }

    #[test]
    fn a_long_ede_text_is_cut_at_400_bytes_and_the_answer_still_parses() {
        let pkt = query("bad.example.", RecordType::A, true);
        let q = parse_query(&pkt).unwrap();
        let mut ans = vec![1, 2, 3];
        warning_answer(
            &mut ans,
            &pkt,
            &q,
            "192.0.2.80".parse().unwrap(),
            "2001:db8::80".parse().unwrap(),
            60,
            15,
            |o| o.extend(std::iter::repeat_n(b'x', 1000)),
        );
        let m = Message::from_vec(&ans).unwrap();
        assert_eq!(m.metadata.id, 4242);
        assert_eq!(m.answers.len(), 1);
        let mut ede = vec![0, 15, 0x01, 0x92, 0, 15];
        ede.extend(std::iter::repeat_n(b'x', 400));
        assert!(ans.ends_with(&ede));
        // The OPT's RDLENGTH covers the option exactly.
        let rdlen_at = ans.len() - ede.len() - 2;
        assert_eq!(
            u16::from_be_bytes([ans[rdlen_at], ans[rdlen_at + 1]]) as usize,
            ede.len()
        );
    }

    #[test]
    fn bad_queries_are_refused_or_dropped() {
        let pkt = query("a.example.", RecordType::A, false);
        let mut response = pkt.clone();
        response[2] |= 0x80;
        assert_eq!(parse_query(&response).unwrap_err(), Malformed::Drop);
        assert_eq!(parse_query(&pkt[..11]).unwrap_err(), Malformed::Drop);
        let mut two = pkt.clone();
        two[5] = 2;
        assert_eq!(
            parse_query(&two).unwrap_err(),
            Malformed::Answer(RCODE_FORMERR)
        );
        let mut trailing = pkt.clone();
        trailing.push(0);
        assert_eq!(
            parse_query(&trailing).unwrap_err(),
            Malformed::Answer(RCODE_FORMERR)
        );
        // A compression pointer in the question.
        let mut ptr = pkt[..12].to_vec();
        ptr.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(
            parse_query(&ptr).unwrap_err(),
            Malformed::Answer(RCODE_FORMERR)
        );
        let m = Message::from_vec(&error_answer(&ptr, RCODE_FORMERR).unwrap()).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        // EDNS version 1: BADVERS, with an OPT to carry it.
        let mut v1 = query("a.example.", RecordType::A, true);
        let opt = v1.len() - 11;
        v1[opt + 6] = 1;
        assert_eq!(
            parse_query(&v1).unwrap_err(),
            Malformed::Answer(RCODE_BADVERS)
        );
        let m = Message::from_vec(&error_answer(&v1, RCODE_BADVERS).unwrap()).unwrap();
        assert_eq!(u16::from(m.metadata.response_code), 16);
    }
}
