//! charon's view of its SAs: `swanctl --list-sas --raw` parsed into IKE_SA and CHILD_SA records.
//!
//! The raw form prints one vici message per line, e.g.
//! `list-sa event {lab {uniqueid=1 state=ESTABLISHED initiator-spi=fe95ba9c62bd72ae ...
//! child-sas {lab-1 {name=lab state=INSTALLED spi-in=90834ef4 spi-out=179bde05 ...}}}}`:
//! sections `name {...}`, values `key=value` and lists `key=[a b]`.

use std::collections::BTreeMap;
use std::iter::Peekable;
use std::str::Chars;

/// One element of a vici message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// `key=value`.
    Value(String),
    /// `key=[a b c]`.
    List(Vec<String>),
    /// `key {...}`.
    Section(Vec<(String, Node)>),
}

fn read_until(it: &mut Peekable<Chars<'_>>, stop: impl Fn(char) -> bool) -> String {
    let mut s = String::new();
    while let Some(&c) = it.peek() {
        if stop(c) {
            break;
        }
        s.push(c);
        it.next();
    }
    s
}

fn skip_ws(it: &mut Peekable<Chars<'_>>) {
    while it.peek().is_some_and(|c| c.is_whitespace()) {
        it.next();
    }
}

/// The body of a section, after its `{`, up to and including the matching `}`.
fn section(it: &mut Peekable<Chars<'_>>) -> Result<Vec<(String, Node)>, String> {
    let mut out = Vec::new();
    loop {
        skip_ws(it);
        match it.peek() {
            None => return Err("unterminated section".into()),
            Some('}') => {
                it.next();
                return Ok(out);
            }
            Some(_) => {}
        }
        let key = read_until(it, |c| {
            c == '=' || c == '{' || c == '}' || c.is_whitespace()
        });
        skip_ws(it);
        match it.next() {
            Some('=') if it.peek() == Some(&'[') => {
                it.next();
                let body = read_until(it, |c| c == ']');
                if it.next() != Some(']') {
                    return Err(format!("unterminated list {key}"));
                }
                out.push((
                    key,
                    Node::List(body.split_whitespace().map(String::from).collect()),
                ));
            }
            Some('=') => {
                let v = read_until(it, |c| c == '}' || c.is_whitespace());
                out.push((key, Node::Value(v)));
            }
            Some('{') => out.push((key, Node::Section(section(it)?))),
            other => return Err(format!("unexpected {other:?} after {key}")),
        }
    }
}

/// A CHILD_SA as charon lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildView {
    /// Its name with the unique id (`lab-1`).
    pub name: String,
    /// `INSTALLED`, `REKEYED`, `DELETED`, ...
    pub state: String,
    /// charon's inbound SPI.
    pub spi_in: u32,
    /// charon's outbound SPI.
    pub spi_out: u32,
    /// Every plain value (`encr-alg`, `dh-group`, ...).
    pub fields: BTreeMap<String, String>,
}

/// An IKE_SA as charon lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeView {
    /// Connection name.
    pub name: String,
    /// `ESTABLISHED`, `REKEYED`, `DELETING`, ...
    pub state: String,
    /// SPIi.
    pub spi_i: u64,
    /// SPIr.
    pub spi_r: u64,
    /// charon is the initiator of this IKE_SA (the I flag).
    pub initiator: bool,
    /// Every plain value (`encr-alg`, `prf-alg`, `dh-group`, ...).
    pub fields: BTreeMap<String, String>,
    /// Its CHILD_SAs in listing order.
    pub children: Vec<ChildView>,
}

impl IkeView {
    /// The CHILD_SAs in state `INSTALLED`.
    pub fn installed(&self) -> Vec<&ChildView> {
        self.children
            .iter()
            .filter(|c| c.state == "INSTALLED")
            .collect()
    }
}

fn values(body: &[(String, Node)]) -> BTreeMap<String, String> {
    body.iter()
        .filter_map(|(k, v)| match v {
            Node::Value(s) => Some((k.clone(), s.clone())),
            _ => None,
        })
        .collect()
}

fn hex_field<T>(
    f: &BTreeMap<String, String>,
    key: &str,
    conv: fn(&str, u32) -> Result<T, std::num::ParseIntError>,
) -> Result<T, String> {
    let v = f.get(key).ok_or_else(|| format!("no {key}"))?;
    conv(v, 16).map_err(|e| format!("{key}={v}: {e}"))
}

fn child(name: &str, body: &[(String, Node)]) -> Result<ChildView, String> {
    let fields = values(body);
    Ok(ChildView {
        name: name.to_string(),
        state: fields.get("state").cloned().unwrap_or_default(),
        spi_in: hex_field(&fields, "spi-in", u32::from_str_radix)?,
        spi_out: hex_field(&fields, "spi-out", u32::from_str_radix)?,
        fields,
    })
}

fn ike(name: &str, body: &[(String, Node)]) -> Result<IkeView, String> {
    let fields = values(body);
    let mut children = Vec::new();
    for (k, v) in body {
        if let (true, Node::Section(list)) = (k == "child-sas", v) {
            for (cname, c) in list {
                if let Node::Section(cb) = c {
                    children.push(child(cname, cb)?);
                }
            }
        }
    }
    Ok(IkeView {
        name: name.to_string(),
        state: fields.get("state").cloned().unwrap_or_default(),
        spi_i: hex_field(&fields, "initiator-spi", u64::from_str_radix)?,
        spi_r: hex_field(&fields, "responder-spi", u64::from_str_radix)?,
        initiator: fields.get("initiator").is_some_and(|v| v == "yes"),
        fields,
        children,
    })
}

/// Every IKE_SA in the output of `swanctl --list-sas --raw`.
pub fn parse_list_sas(out: &str) -> Result<Vec<IkeView>, String> {
    let mut sas = Vec::new();
    for line in out.lines().filter(|l| l.starts_with("list-sa event")) {
        let Some(pos) = line.find('{') else { continue };
        let mut it = line[pos + 1..].chars().peekable();
        let body = section(&mut it).map_err(|e| format!("{e} in `{line}`"))?;
        for (name, n) in &body {
            if let Node::Section(b) = n {
                sas.push(ike(name, b).map_err(|e| format!("{e} in `{line}`"))?);
            }
        }
    }
    Ok(sas)
}

#[test]
fn parses_a_listing_with_a_rekeyed_child() {
    let out = "list-sa event {lab {uniqueid=3 version=2 state=ESTABLISHED local-host=198.18.10.1 \
        local-port=4500 initiator=yes initiator-spi=11459ee82b586537 responder-spi=5128fbf83e813c47 \
        encr-alg=AES_GCM_16 encr-keysize=256 prf-alg=PRF_HMAC_SHA2_384 dh-group=ECP_384 \
        child-sas {lab-2 {name=lab uniqueid=2 state=DELETED spi-in=ad3b7756 spi-out=41abf501 \
        local-ts=[198.19.1.0/24] remote-ts=[198.19.2.0/24]} lab-3 {name=lab state=INSTALLED \
        spi-in=8132d70d spi-out=42ca16ee dh-group=MODP_2048 local-ts=[198.19.1.0/24 198.19.3.0/24] \
        remote-ts=[198.19.2.0/24]}}}}\nlist-sas reply {}\n";
    let sas = parse_list_sas(out).unwrap();
    assert_eq!(sas.len(), 1);
    let s = &sas[0];
    assert_eq!(
        (s.name.as_str(), s.state.as_str(), s.initiator),
        ("lab", "ESTABLISHED", true)
    );
    assert_eq!((s.spi_i, s.spi_r), (0x11459ee82b586537, 0x5128fbf83e813c47));
    assert_eq!(s.fields["dh-group"], "ECP_384");
    assert_eq!(s.children.len(), 2);
    assert_eq!(s.installed().len(), 1);
    assert_eq!(
        (s.children[1].spi_in, s.children[1].spi_out),
        (0x8132d70d, 0x42ca16ee)
    );
    assert_eq!(s.children[1].fields["dh-group"], "MODP_2048");
    assert!(parse_list_sas("list-sa event {lab {state=X initiator-spi=zz}}").is_err());
    assert!(parse_list_sas("list-sas reply {}\n").unwrap().is_empty());
}
