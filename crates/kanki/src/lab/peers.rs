//! The drill ISP's own peers, so that nothing leaves the machine: the
//! mail server notices are delivered to, the web server of the threat
//! feed, and the resolver behind the DNS front.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// A notice as the subscriber's mailbox received it.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub to: Vec<String>,
    /// The notice reference, from the mail's Message-ID.
    pub reference: Option<String>,
}

/// Largest message the sink takes; larger ones are refused (552).
const MAX_MESSAGE: usize = 1 << 20;

/// The subscribers' mail server: an SMTP receiver on loopback that keeps
/// every message in a maildir (`mail/new/`, for the trainee to read) and
/// tells the lab who got which notice.
///
/// Written here rather than taken from a crate: it needs only the
/// receiving half of RFC 5321 without TLS or authentication (a dozen
/// lines of state), and the SMTP server crates bring a runtime or a
/// framework of their own.
pub async fn smtp_sink(
    addr: SocketAddr,
    maildir: PathBuf,
    tx: mpsc::UnboundedSender<Delivered>,
) -> anyhow::Result<()> {
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub))?;
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let maildir = Arc::new(maildir);
    tokio::spawn(async move {
        let mut n = 0u64;
        while let Ok((conn, _)) = listener.accept().await {
            n += 1;
            let (maildir, tx) = (maildir.clone(), tx.clone());
            tokio::spawn(async move {
                if let Err(e) = smtp_session(conn, &maildir, n, &tx).await {
                    tracing::debug!(error = %e, "lab SMTP session ended");
                }
            });
        }
    });
    Ok(())
}

async fn smtp_session(
    conn: tokio::net::TcpStream,
    maildir: &Path,
    conn_no: u64,
    tx: &mpsc::UnboundedSender<Delivered>,
) -> anyhow::Result<()> {
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 mail.subscribers.lab.example ESMTP kanki-lab\r\n")
        .await?;
    let mut to = Vec::new();
    let mut line = String::new();
    let mut seq = 0u64;
    loop {
        line.clear();
        if read_line_bounded(&mut r, &mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                w.write_all(b"250-mail.subscribers.lab.example\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 1048576\r\n")
                    .await?
            }
            "HELO" => w.write_all(b"250 mail.subscribers.lab.example\r\n").await?,
            "MAIL" => {
                to.clear();
                w.write_all(b"250 OK\r\n").await?
            }
            "RCPT" => {
                let addr = line
                    .split_once(':')
                    .map(|(_, a)| a.trim().trim_start_matches('<'))
                    .and_then(|a| a.split('>').next())
                    .unwrap_or("")
                    .to_string();
                to.push(addr);
                w.write_all(b"250 OK\r\n").await?
            }
            "DATA" => {
                w.write_all(b"354 go ahead\r\n").await?;
                let message = read_data(&mut r).await?;
                let Some(message) = message else {
                    w.write_all(b"552 message too large\r\n").await?;
                    continue;
                };
                seq += 1;
                let name = format!(
                    "{}.{}_{}.kanki-lab",
                    chrono::Utc::now().timestamp(),
                    conn_no,
                    seq
                );
                let tmp = maildir.join("tmp").join(&name);
                tokio::fs::write(&tmp, &message).await?;
                tokio::fs::rename(&tmp, maildir.join("new").join(&name)).await?;
                let reference = header(&message, "message-id").and_then(|id| {
                    kanki_notify::reference_of_message_id(id.trim_matches(['<', '>', ' ']))
                        .map(str::to_string)
                });
                let _ = tx.send(Delivered {
                    to: std::mem::take(&mut to),
                    reference,
                });
                w.write_all(b"250 OK queued\r\n").await?
            }
            "RSET" => {
                to.clear();
                w.write_all(b"250 OK\r\n").await?
            }
            "NOOP" => w.write_all(b"250 OK\r\n").await?,
            "QUIT" => {
                w.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => w.write_all(b"502 not implemented\r\n").await?,
        }
    }
}

/// Reads one line of at most 4 KiB (a longer one ends the session).
async fn read_line_bounded<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut String,
) -> anyhow::Result<usize> {
    let mut buf = Vec::new();
    let n = (&mut *r).take(4096).read_until(b'\n', &mut buf).await?;
    anyhow::ensure!(n < 4096 || buf.ends_with(b"\n"), "line too long");
    line.push_str(&String::from_utf8_lossy(&buf));
    Ok(n)
}

/// The message up to the lone dot, dot-unstuffed; `None` when it is
/// larger than [`MAX_MESSAGE`] (read to its end all the same).
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> anyhow::Result<Option<Vec<u8>>> {
    let mut message = Vec::new();
    let mut too_large = false;
    loop {
        let mut buf = Vec::new();
        let n = (&mut *r).take(65_536).read_until(b'\n', &mut buf).await?;
        anyhow::ensure!(n > 0, "connection closed in DATA");
        if buf == b".\r\n" || buf == b".\n" {
            return Ok((!too_large).then_some(message));
        }
        let line = buf.strip_prefix(b".").unwrap_or(&buf);
        if message.len() + line.len() > MAX_MESSAGE {
            too_large = true;
            message.clear();
        } else if !too_large {
            message.extend_from_slice(line);
        }
    }
}

/// The value of the first header `name` (lower case) of a message.
fn header<'a>(message: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(message).ok()?;
    let head = text.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The threat feed's web server: the scenario's list of distribution
/// sites at `/malware-sites.txt`, fetched by serve's feed schedule.
pub async fn feed_server(addr: SocketAddr, body: String) -> anyhow::Result<()> {
    use axum::routing::get;
    let body = Arc::new(body);
    let app = axum::Router::new().route(
        "/malware-sites.txt",
        get(move || {
            let body = body.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; charset=utf-8",
                    )],
                    body.as_str().to_owned(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the lab's feed server stopped");
        }
    });
    Ok(())
}

/// The resolver behind the DNS front: answers every A query with an
/// address of TEST-NET-2 derived from the name (nothing is ever sent
/// there), every other query with an empty answer.
pub async fn upstream_resolver(addr: SocketAddr) -> anyhow::Result<()> {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::{RData, Record, RecordType, rdata::A};
    let socket = tokio::net::UdpSocket::bind(addr).await?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut m = Message::response(q.metadata.id, q.metadata.op_code);
            m.metadata.message_type = MessageType::Response;
            m.metadata.recursion_desired = q.metadata.recursion_desired;
            m.metadata.recursion_available = true;
            m.metadata.response_code = ResponseCode::NoError;
            for query in &q.queries {
                m.add_query(query.clone());
                if query.query_type() == RecordType::A {
                    let h = query
                        .name()
                        .to_ascii()
                        .bytes()
                        .fold(7u8, |h, b| h.wrapping_mul(31).wrapping_add(b));
                    let a = Ipv4Addr::new(198, 51, 100, h.max(1));
                    m.add_answer(Record::from_rdata(
                        query.name().clone(),
                        300,
                        RData::A(A(a)),
                    ));
                }
            }
            if let Ok(bytes) = m.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sink_keeps_a_mail_and_names_its_notice() {
        let dir = tempfile::tempdir().unwrap();
        let addr = crate::lab::config::LabPorts::pick().unwrap().smtp;
        let (tx, mut rx) = mpsc::unbounded_channel();
        smtp_sink(addr, dir.path().join("mail"), tx).await.unwrap();
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let id = kanki_notify::message_id("K-ABCD-EFGH-JKLM", "isp.example");
        c.write_all(
            format!(
                "EHLO kanki\r\nMAIL FROM:<a@isp.example>\r\nRCPT TO:<s1@example.jp>\r\nDATA\r\nMessage-ID: <{id}>\r\nSubject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let d = rx.recv().await.unwrap();
        assert_eq!(d.to, ["s1@example.jp"]);
        assert_eq!(d.reference.as_deref(), Some("K-ABCD-EFGH-JKLM"));
        let kept: Vec<_> = std::fs::read_dir(dir.path().join("mail/new"))
            .unwrap()
            .collect();
        assert_eq!(kept.len(), 1);
        let text = std::fs::read_to_string(kept[0].as_ref().unwrap().path()).unwrap();
        assert!(text.ends_with("\r\n.dot\r\n"), "{text:?}");
    }
}
