//! Delivery status notifications (RFC 3464): the bounce a mail server sends
//! back, often hours after it accepted a notice, when the mailbox turns out
//! not to exist or to be full. A DSN is a `multipart/report;
//! report-type=delivery-status` message: a human part, a
//! `message/delivery-status` part (fields of the reporting server, then a
//! block per recipient: `Action`, `Status`, `Diagnostic-Code`), and the
//! original message or its headers, whose `Message-ID` names the notice.

use mailparse::{MailHeaderMap, ParsedMail};

/// What a DSN says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dsn {
    /// The `Message-ID` of the message it reports on, without `<>`.
    pub original_message_id: Option<String>,
    pub recipients: Vec<DsnRecipient>,
}

/// One recipient's block of a DSN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DsnRecipient {
    /// `Final-Recipient`, without its address type (`rfc822;`).
    pub recipient: String,
    /// `failed`, `delayed`, `delivered`, `relayed` or `expanded`.
    pub action: String,
    /// The status code, e.g. `5.1.1`.
    pub status: String,
    /// `Diagnostic-Code`, without its type (`smtp;`), when given.
    pub diagnostic: Option<String>,
}

impl DsnRecipient {
    /// Whether the message will not reach this recipient: `failed`, with a
    /// permanent (5.x.x) status.
    pub fn is_permanent_failure(&self) -> bool {
        self.action.eq_ignore_ascii_case("failed") && self.status.starts_with('5')
    }
}

/// Reads a DSN from a whole mail message (as a mailbox delivers it).
pub fn parse_dsn(message: &[u8]) -> Result<Dsn, String> {
    let mail = mailparse::parse_mail(message).map_err(|e| format!("not a mail message: {e}"))?;
    let report = find(&mail, &|p| {
        p.ctype.mimetype.eq_ignore_ascii_case("multipart/report")
            && p.ctype
                .params
                .get("report-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"))
    })
    .ok_or(
        "not a delivery status notification (no multipart/report; report-type=delivery-status)",
    )?;
    let status = find(report, &|p| {
        p.ctype
            .mimetype
            .eq_ignore_ascii_case("message/delivery-status")
    })
    .ok_or("the report has no message/delivery-status part")?;
    let body = status
        .get_body_raw()
        .map_err(|e| format!("the delivery-status part cannot be read: {e}"))?;
    let recipients = field_blocks(&body)
        .into_iter()
        // The first block is about the message (Reporting-MTA, ...).
        .skip(1)
        .filter_map(|fields| {
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let untyped = |v: String| match v.split_once(';') {
                Some((_, rest)) => rest.trim().to_string(),
                None => v.trim().to_string(),
            };
            Some(DsnRecipient {
                recipient: untyped(get("Final-Recipient").or_else(|| get("Original-Recipient"))?),
                action: get("Action")?.trim().to_ascii_lowercase(),
                status: get("Status")?.trim().to_string(),
                diagnostic: get("Diagnostic-Code").map(untyped),
            })
        })
        .collect::<Vec<_>>();
    if recipients.is_empty() {
        return Err("the delivery-status part names no recipient with an action and status".into());
    }
    let original = find(report, &|p| {
        let m = p.ctype.mimetype.to_ascii_lowercase();
        m == "text/rfc822-headers" || m == "message/rfc822"
    });
    let original_message_id = original.and_then(|p| {
        let raw = p.get_body_raw().ok()?;
        let (headers, _) = mailparse::parse_headers(&raw).ok()?;
        let id = headers.get_first_value("Message-ID")?;
        Some(
            id.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string(),
        )
    });
    Ok(Dsn {
        original_message_id,
        recipients,
    })
}

/// The first part, depth first, that `want` accepts.
fn find<'a, 'b>(
    p: &'a ParsedMail<'b>,
    want: &dyn Fn(&ParsedMail) -> bool,
) -> Option<&'a ParsedMail<'b>> {
    if want(p) {
        return Some(p);
    }
    p.subparts.iter().find_map(|s| find(s, want))
}

/// The blocks of `Name: value` fields of a delivery-status body, separated
/// by blank lines (continuation lines folded in).
fn field_blocks(body: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = String::from_utf8_lossy(body);
    let mut blocks: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        let current = blocks.last_mut().expect("never empty");
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(Vec::new());
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = current.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            current.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    blocks.retain(|b| !b.is_empty());
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bounce as Postfix writes it.
    const POSTFIX: &str = "From: MAILER-DAEMON@mx.isp.example (Mail Delivery System)\r
To: abuse@isp.example\r
Subject: Undelivered Mail Returned to Sender\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status;\r
\tboundary=\"B1\"\r
\r
--B1\r
Content-Type: text/plain; charset=us-ascii\r
\r
I'm sorry to have to inform you that your message could not\r
be delivered to one or more recipients.\r
\r
--B1\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.isp.example\r
X-Postfix-Queue-ID: 4F1A2B3C\r
Arrival-Date: Mon, 23 Nov 2026 01:00:00 +0000 (UTC)\r
\r
Final-Recipient: rfc822; nobody@example.jp\r
Original-Recipient: rfc822;nobody@example.jp\r
Action: failed\r
Status: 5.1.1\r
Remote-MTA: dns; mx.example.jp\r
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.jp>: Recipient address\r
    rejected: User unknown\r
\r
--B1\r
Content-Type: text/rfc822-headers\r
\r
From: abuse@isp.example\r
To: nobody@example.jp\r
Subject: =?utf-8?b?44GK55+l44KJ44Gb?=\r
Message-ID: <K-ABCD-EFGH-JKMN.notice@isp.example>\r
\r
--B1--\r
";

    #[test]
    fn a_postfix_bounce_names_the_notice_and_why() {
        let d = parse_dsn(POSTFIX.as_bytes()).unwrap();
        assert_eq!(
            d.original_message_id.as_deref(),
            Some("K-ABCD-EFGH-JKMN.notice@isp.example")
        );
        assert_eq!(d.recipients.len(), 1);
        let r = &d.recipients[0];
        assert_eq!(r.recipient, "nobody@example.jp");
        assert_eq!((r.action.as_str(), r.status.as_str()), ("failed", "5.1.1"));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some("550 5.1.1 <nobody@example.jp>: Recipient address rejected: User unknown")
        );
        assert!(r.is_permanent_failure());
    }

    #[test]
    fn a_delay_is_not_a_failure_and_other_mail_is_not_a_dsn() {
        let delayed = POSTFIX
            .replace("Action: failed", "Action: delayed")
            .replace("Status: 5.1.1", "Status: 4.4.1");
        let d = parse_dsn(delayed.as_bytes()).unwrap();
        assert!(!d.recipients[0].is_permanent_failure());
        let plain = "From: a@example.jp\r\nSubject: hello\r\n\r\nhi\r\n";
        assert!(
            parse_dsn(plain.as_bytes())
                .unwrap_err()
                .contains("not a delivery status")
        );
    }
}
