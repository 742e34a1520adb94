//! Cutting the rw connections a change of primary leaves pointing at the old primary, in
//! kernel-endpoint mode. Deleting their conntrack entries alone does not reach a client whose
//! old primary can no longer answer (partitioned, or killed behind a partition): it waits on a
//! read or a connect until its own timeout. So the local clients' sockets of those connections
//! are aborted too, as the userspace proxy closes its client side: each client sees the error
//! at once and reconnects, now to the new primary.

use anyhow::Context;
use quick_xml::events::Event;
use quick_xml::Reader;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The client end (the original direction's source) of each flow in `conntrack -o xml`
/// output, such as the flows `conntrack -D -o xml` deleted.
pub fn client_ends(xml: &str) -> anyhow::Result<Vec<SocketAddrV4>> {
    /// Where the reader is inside a flow's original-direction `meta`.
    #[derive(Clone, Copy, PartialEq)]
    enum Field {
        Other,
        Src,
        Sport,
    }
    let mut reader = Reader::from_str(xml);
    let mut ends = Vec::new();
    let mut in_original = false;
    let mut field = Field::Other;
    let (mut src, mut sport): (Option<Ipv4Addr>, Option<u16>) = (None, None);
    loop {
        match reader
            .read_event()
            .context("conntrack printed malformed XML")?
        {
            Event::Start(tag) => match tag.local_name().as_ref() {
                b"meta" => {
                    in_original = tag
                        .try_get_attribute("direction")
                        .ok()
                        .flatten()
                        .is_some_and(|a| a.value.as_ref() == b"original");
                }
                b"src" if in_original => field = Field::Src,
                b"sport" if in_original => field = Field::Sport,
                _ => field = Field::Other,
            },
            Event::Text(text) if field != Field::Other => {
                let text = text.decode().context("conntrack printed non-UTF-8 XML")?;
                let text = text.trim();
                match field {
                    Field::Src => src = Some(text.parse().context("a flow's source address")?),
                    Field::Sport => sport = Some(text.parse().context("a flow's source port")?),
                    Field::Other => {}
                }
            }
            Event::End(tag) => {
                field = Field::Other;
                match tag.local_name().as_ref() {
                    b"meta" => in_original = false,
                    b"flow" => {
                        if let (Some(ip), Some(port)) = (src.take(), sport.take()) {
                            ends.push(SocketAddrV4::new(ip, port));
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(ends)
}

/// How many sockets one `ss -K` filter names: filters stay short enough for any command line.
const SOCKETS_PER_FILTER: usize = 64;

/// `ss` filters selecting the local client sockets of `clients`' connections to `listen:port`
/// (the endpoint as the client addressed it: destination rewriting does not change the
/// socket's peer).
pub fn socket_filters(listen: Ipv4Addr, port: u16, clients: &[SocketAddrV4]) -> Vec<String> {
    clients
        .chunks(SOCKETS_PER_FILTER)
        .map(|chunk| {
            let ends: Vec<String> = chunk
                .iter()
                .map(|c| format!("( src {} and sport = :{} )", c.ip(), c.port()))
                .collect();
            let endpoint = if listen.is_unspecified() {
                format!("dport = :{port}")
            } else {
                format!("dst {listen} and dport = :{port}")
            };
            format!("{endpoint} and ( {} )", ends.join(" or "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two flows as conntrack 1.4.7 prints them: a client on loopback rewritten to a member,
    /// one established and one still connecting.
    const DELETED: &str = r#"<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>127.0.0.1</src><dst>127.0.0.1</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>53208</sport><dport>13306</dport></layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>10.231.1.10</src><dst>127.0.0.1</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>3306</sport><dport>53208</dport></layer4></meta><meta direction="independent"><state>ESTABLISHED</state><timeout>431999</timeout><mark>0</mark><use>1</use><id>449232357</id><assured/></meta></flow>
<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>127.0.0.2</src><dst>127.0.0.1</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>40001</sport><dport>13306</dport></layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>10.231.1.10</src><dst>127.0.0.2</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>3306</sport><dport>40001</dport></layer4></meta><meta direction="independent"><state>SYN_SENT</state><timeout>119</timeout><mark>0</mark><use>1</use><id>17</id><unreplied/></meta></flow>
"#;

    #[test]
    fn the_client_end_of_each_deleted_flow_is_found() {
        assert_eq!(
            client_ends(DELETED).unwrap(),
            vec![
                "127.0.0.1:53208".parse().unwrap(),
                "127.0.0.2:40001".parse().unwrap()
            ]
        );
        // No flow deleted: conntrack prints nothing on stdout.
        assert_eq!(client_ends("").unwrap(), vec![]);
        // The listing's header and root element are no flows either.
        let listing = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<conntrack>\n{DELETED}</conntrack>\n"
        );
        assert_eq!(client_ends(&listing).unwrap().len(), 2);
        assert!(client_ends("<flow><meta direction=\"original\"><layer3><src>nope</src>").is_err());
    }

    #[test]
    fn filters_name_each_client_socket_of_the_endpoint_in_bounded_batches() {
        let one: SocketAddrV4 = "127.0.0.1:53208".parse().unwrap();
        assert_eq!(
            socket_filters(Ipv4Addr::LOCALHOST, 13306, &[one]),
            vec!["dst 127.0.0.1 and dport = :13306 and ( ( src 127.0.0.1 and sport = :53208 ) )"]
        );
        assert_eq!(
            socket_filters(Ipv4Addr::UNSPECIFIED, 13306, &[one]),
            vec!["dport = :13306 and ( ( src 127.0.0.1 and sport = :53208 ) )"]
        );
        let many: Vec<SocketAddrV4> = (0..130)
            .map(|p| SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40000 + p))
            .collect();
        let filters = socket_filters(Ipv4Addr::LOCALHOST, 13306, &many);
        assert_eq!(filters.len(), 3);
        let named: usize = filters.iter().map(|f| f.matches("sport = :").count()).sum();
        assert_eq!(named, 130);
        assert!(socket_filters(Ipv4Addr::LOCALHOST, 13306, &[]).is_empty());
    }
}
