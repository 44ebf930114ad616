//! The wire format against real messages: every datagram of the strongSwan captures in
//! `tests/vectors/strongswan/` (IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL, both
//! directions) parses, emits byte-identically, and the encrypted ones open with the captured
//! SK_e keys to exactly the inner payloads strongSwan encrypted.

use espada_ike::crypto::aead::SkAead;
use espada_ike::msgs::{self, Message, Payload, PayloadType, rules};

/// Just enough JSON for the vector files (no dependency for one test).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(s: &str) -> Json {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.b.len(), "trailing JSON");
        v
    }

    fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(kv) => kv
                .iter()
                .find(|(k, _)| k == key)
                .map_or(&Json::Null, |(_, v)| v),
            _ => &Json::Null,
        }
    }

    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(v) => v,
            other => panic!("not an array: {other:?}"),
        }
    }

    fn index(&self) -> Option<usize> {
        match self {
            Json::Num(n) => Some(n.parse().unwrap()),
            _ => None,
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(self.b[self.i], c, "JSON at {}", self.i);
        self.i += 1;
    }

    fn lit(&mut self, word: &str, v: Json) -> Json {
        assert!(self.b[self.i..].starts_with(word.as_bytes()));
        self.i += word.len();
        v
    }

    fn string(&mut self) -> String {
        self.eat(b'"');
        let mut out = String::new();
        loop {
            let c = self.b[self.i];
            self.i += 1;
            match c {
                b'"' => return out,
                b'\\' => {
                    let e = self.b[self.i];
                    self.i += 1;
                    match e {
                        b'u' => {
                            let hex = std::str::from_utf8(&self.b[self.i..self.i + 4]).unwrap();
                            out.push(
                                char::from_u32(u32::from_str_radix(hex, 16).unwrap()).unwrap(),
                            );
                            self.i += 4;
                        }
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        other => out.push(char::from(other)),
                    }
                }
                _ => out.push(char::from(c)),
            }
        }
    }

    fn value(&mut self) -> Json {
        self.ws();
        match self.b[self.i] {
            b'{' => {
                self.i += 1;
                let mut kv = Vec::new();
                self.ws();
                if self.b[self.i] == b'}' {
                    self.i += 1;
                    return Json::Obj(kv);
                }
                loop {
                    let k = self.string();
                    self.eat(b':');
                    kv.push((k, self.value()));
                    self.ws();
                    self.i += 1;
                    if self.b[self.i - 1] == b'}' {
                        return Json::Obj(kv);
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.b[self.i] == b']' {
                    self.i += 1;
                    return Json::Arr(v);
                }
                loop {
                    v.push(self.value());
                    self.ws();
                    self.i += 1;
                    if self.b[self.i - 1] == b']' {
                        return Json::Arr(v);
                    }
                }
            }
            b'"' => Json::Str(self.string()),
            b't' => self.lit("true", Json::Bool(true)),
            b'f' => self.lit("false", Json::Bool(false)),
            b'n' => self.lit("null", Json::Null),
            _ => {
                let start = self.i;
                while self
                    .b
                    .get(self.i)
                    .is_some_and(|c| b"+-.eE0123456789".contains(c))
                {
                    self.i += 1;
                }
                Json::Num(String::from_utf8(self.b[start..self.i].to_vec()).unwrap())
            }
        }
    }
}

fn vectors() -> Vec<(String, Json)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/strongswan");
    let mut out: Vec<(String, Json)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.display().to_string(),
                Json::parse(&std::fs::read_to_string(&p).unwrap()),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 3, "vector files missing");
    out
}

#[test]
fn every_captured_datagram_round_trips() {
    let mut n = 0;
    for (file, v) in vectors() {
        for d in v.get("datagrams").arr() {
            let bytes = hex::decode(d.get("hex").str()).unwrap();
            let m = Message::parse(&bytes)
                .unwrap_or_else(|e| panic!("{file} #{:?}: {e}", d.get("index")));
            assert_eq!(m.emit(), bytes, "{file} #{:?}", d.get("index"));
            assert_eq!(
                m.header.message_id.to_string(),
                match d.get("message_id") {
                    Json::Num(s) => s.clone(),
                    other => panic!("{other:?}"),
                }
            );
            assert_eq!(
                m.header.is_response(),
                d.get("response") == &Json::Bool(true)
            );
            n += 1;
        }
    }
    assert!(n >= 40, "{n} datagrams");
}

#[test]
fn encrypted_datagrams_open_with_captured_keys() {
    let mut opened = 0;
    for (file, v) in vectors() {
        let sas = v.get("ike_sas").arr();
        for d in v.get("datagrams").arr() {
            let Json::Obj(_) = d.get("sk") else { continue };
            let bytes = hex::decode(d.get("hex").str()).unwrap();
            let sa = &sas[d.get("ike_sa").index().unwrap()];
            // SK_ei protects what the IKE SA's original initiator sends (§2.14).
            let from_initiator = d.get("from").str() == sa.get("initiator").str();
            let key = sa.get(if from_initiator { "sk_ei" } else { "sk_er" }).str();
            let aead = SkAead::new(&hex::decode(key).unwrap()).unwrap();
            let m = msgs::open(&bytes, &aead)
                .unwrap_or_else(|e| panic!("{file} #{:?}: {e}", d.get("index")));
            let want_inner = hex::decode(d.get("sk").get("inner_payloads_hex").str()).unwrap();
            let mut inner = Vec::new();
            let first = msgs::emit_payloads(&m.payloads, &mut inner);
            assert_eq!(inner, want_inner, "{file} #{:?}", d.get("index"));
            assert_eq!(
                first,
                Message::parse(&bytes).unwrap().sk().unwrap().first_inner,
                "first inner payload type"
            );
            assert_eq!(
                rules::check(m.header.exchange, m.header.is_response(), &m.payloads),
                Ok(())
            );
            assert!(
                m.payloads
                    .iter()
                    .all(|p| !matches!(p, Payload::Sk(_) | Payload::Skf(_)))
            );
            // A wrong-direction key fails the integrity check.
            let other = sa.get(if from_initiator { "sk_er" } else { "sk_ei" }).str();
            let wrong = SkAead::new(&hex::decode(other).unwrap()).unwrap();
            assert_eq!(
                msgs::open(&bytes, &wrong).unwrap_err(),
                msgs::ProtectError::IntegrityCheckFailed
            );
            opened += 1;
        }
    }
    assert!(opened >= 30, "{opened} opened");
}

#[test]
fn ike_sa_init_messages_follow_the_rules() {
    for (_, v) in vectors() {
        for d in v.get("datagrams").arr() {
            let m = Message::parse(&hex::decode(d.get("hex").str()).unwrap()).unwrap();
            if m.header.next_payload != PayloadType::SK {
                assert_eq!(
                    rules::check(m.header.exchange, m.header.is_response(), &m.payloads),
                    Ok(())
                );
                assert!(m.first_sa().is_some() && m.ke().is_some() && m.nonce().is_some());
            }
        }
    }
}
