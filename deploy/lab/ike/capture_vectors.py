#!/usr/bin/env python3
"""Turns one captured strongSwan session (pcap + both charon logs at ike/chd level 4) into a JSON
test vector for espada-ike, and checks that the vector is coherent before writing it:

  * both charons logged the same secrets;
  * SKEYSEED = prf(Ni | Nr, g^ir) for the first IKE SA and prf(SK_d(old), g^ir | Ni | Nr) for the
    rekeyed one (RFC 7296 2.14, 2.18), {SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr} =
    prf+(SKEYSEED, Ni | Nr | SPIi | SPIr), nonces and SPIs taken from the messages themselves;
  * every SK payload decrypts (AES-GCM, RFC 5282) with SK_ei / SK_er;
  * both PSK AUTH payloads equal prf(prf(PSK, "Key Pad for IKEv2"), <signed octets>) (RFC 7296 2.15);
  * every CHILD_SA's KEYMAT = prf+(SK_d, [g^ir (PFS)] | Ni | Nr) (RFC 7296 2.17) and its SPIs are
    the ones carried in the SA payloads;
  * every captured ESP packet decrypts (RFC 4106) with the CHILD_SA key for its SPI.

Usage: see capture_vectors.sh (which calls this with every argument).
"""
import argparse
import hashlib
import hmac
import ipaddress
import json
import re
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.all import IP, IPv6, UDP, rdpcap

SCHEMA = "espada-ike-strongswan-vector/1"

EXCHANGES = {34: "IKE_SA_INIT", 35: "IKE_AUTH", 36: "CREATE_CHILD_SA", 37: "INFORMATIONAL"}
PAYLOADS = {33: "SA", 34: "KE", 35: "IDi", 36: "IDr", 37: "CERT", 38: "CERTREQ", 39: "AUTH",
            40: "Nonce", 41: "N", 42: "D", 43: "V", 44: "TSi", 45: "TSr", 46: "SK", 47: "CP",
            48: "EAP", 53: "SKF"}
NOTIFIES = {
    1: "UNSUPPORTED_CRITICAL_PAYLOAD", 4: "INVALID_IKE_SPI", 5: "INVALID_MAJOR_VERSION",
    7: "INVALID_SYNTAX", 9: "INVALID_MESSAGE_ID", 11: "INVALID_SPI", 14: "NO_PROPOSAL_CHOSEN",
    17: "INVALID_KE_PAYLOAD", 24: "AUTHENTICATION_FAILED", 34: "SINGLE_PAIR_REQUIRED",
    35: "NO_ADDITIONAL_SAS", 36: "INTERNAL_ADDRESS_FAILURE", 37: "FAILED_CP_REQUIRED",
    38: "TS_UNACCEPTABLE", 39: "INVALID_SELECTORS", 43: "TEMPORARY_FAILURE",
    44: "CHILD_SA_NOT_FOUND",
    16384: "INITIAL_CONTACT", 16385: "SET_WINDOW_SIZE", 16386: "ADDITIONAL_TS_POSSIBLE",
    16387: "IPCOMP_SUPPORTED", 16388: "NAT_DETECTION_SOURCE_IP",
    16389: "NAT_DETECTION_DESTINATION_IP", 16390: "COOKIE", 16391: "USE_TRANSPORT_MODE",
    16392: "HTTP_CERT_LOOKUP_SUPPORTED", 16393: "REKEY_SA", 16394: "ESP_TFC_PADDING_NOT_SUPPORTED",
    16395: "NON_FIRST_FRAGMENTS_ALSO", 16396: "MOBIKE_SUPPORTED", 16397: "ADDITIONAL_IP4_ADDRESS",
    16398: "ADDITIONAL_IP6_ADDRESS", 16399: "NO_ADDITIONAL_ADDRESSES", 16400: "UPDATE_SA_ADDRESSES",
    16401: "COOKIE2", 16402: "NO_NATS_ALLOWED", 16403: "AUTH_LIFETIME",
    16404: "MULTIPLE_AUTH_SUPPORTED", 16405: "ANOTHER_AUTH_FOLLOWS", 16406: "REDIRECT_SUPPORTED",
    16407: "REDIRECT", 16408: "REDIRECTED_FROM", 16417: "EAP_ONLY_AUTHENTICATION",
    16418: "CHILDLESS_IKEV2_SUPPORTED", 16419: "QUICK_CRASH_DETECTION",
    16420: "IKEV2_MESSAGE_ID_SYNC_SUPPORTED", 16421: "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED",
    16422: "IKEV2_MESSAGE_ID_SYNC", 16423: "IPSEC_REPLAY_COUNTER_SYNC",
    16430: "IKEV2_FRAGMENTATION_SUPPORTED", 16431: "SIGNATURE_HASH_ALGORITHMS",
    16438: "INTERMEDIATE_EXCHANGE_SUPPORTED",
}
TRANSFORM_TYPES = {1: "ENCR", 2: "PRF", 3: "INTEG", 4: "DH", 5: "ESN"}
TRANSFORM_IDS = {
    (1, 12): "ENCR_AES_CBC", (1, 20): "ENCR_AES_GCM_16", (1, 19): "ENCR_AES_GCM_12",
    (1, 18): "ENCR_AES_GCM_8", (1, 28): "ENCR_CHACHA20_POLY1305",
    (2, 2): "PRF_HMAC_SHA1", (2, 5): "PRF_HMAC_SHA2_256", (2, 6): "PRF_HMAC_SHA2_384",
    (2, 7): "PRF_HMAC_SHA2_512",
    (3, 2): "AUTH_HMAC_SHA1_96", (3, 12): "AUTH_HMAC_SHA2_256_128",
    (3, 13): "AUTH_HMAC_SHA2_384_192", (3, 14): "AUTH_HMAC_SHA2_512_256",
    (4, 14): "MODP_2048", (4, 19): "ECP_256", (4, 20): "ECP_384", (4, 21): "ECP_521",
    (4, 31): "CURVE25519",
    (5, 0): "NO_ESN", (5, 1): "ESN",
}
PROTOCOLS = {0: "NONE", 1: "IKE", 2: "AH", 3: "ESP"}
ID_TYPES = {1: "ID_IPV4_ADDR", 2: "ID_FQDN", 3: "ID_RFC822_ADDR", 5: "ID_IPV6_ADDR",
            9: "ID_DER_ASN1_DN", 11: "ID_KEY_ID"}
AUTH_METHODS = {1: "RSA_SIG", 2: "SHARED_KEY_MIC", 3: "DSS_SIG", 9: "ECDSA_256", 14: "DIGITAL_SIG"}
PRF_HASH = {2: hashlib.sha1, 5: hashlib.sha256, 6: hashlib.sha384, 7: hashlib.sha512}
GCM_ENCR = {20}
FLAG_I, FLAG_V, FLAG_R = 0x08, 0x10, 0x20


class VectorError(Exception):
    pass


def check(cond, what):
    if not cond:
        raise VectorError(what)


def u16(b, o):
    return int.from_bytes(b[o:o + 2], "big")


def u32(b, o):
    return int.from_bytes(b[o:o + 4], "big")


# ---------------------------------------------------------------- charon log

LINE = re.compile(r"^\S+ (\d+)\[([A-Z]+)\] (?:<([^>]*)> )?(.*)$")
DUMP_HEAD = re.compile(r"^(.*) => (\d+) bytes @ 0x[0-9a-f]+$")
DUMP_LINE = re.compile(r"^\s*(\d+): ((?:[0-9A-F]{2} ?){1,16})")
SPI_LINE = re.compile(r"^\s+SPI 0x([0-9a-f]{8}), src (\S+) dst (\S+)$")
SA_LINE = re.compile(r"^(adding inbound|adding outbound|registering outbound) ESP SA$")
SUMMARY = re.compile(r"^(generating|parsed) (\S+) (request|response) (\d+) \[ ?(.*?) ?\]$")


def parse_log(path):
    """Events in log order: ('dump', subsys, label, bytes), ('spi', kind, spi),
    ('summary', verb, exchange, kind, msgid, text)."""
    events = []
    pending = {}  # thread -> [subsys, label, length, bytearray]
    sa_kind = {}  # thread -> kind of the last "adding ... ESP SA" line
    with open(path, errors="replace") as f:
        for raw in f:
            m = LINE.match(raw.rstrip("\n"))
            if not m:
                continue
            thread, subsys, _sa, msg = m.groups()
            p = pending.get(thread)
            if p is not None:
                d = DUMP_LINE.match(msg)
                if d and int(d.group(1)) == len(p[3]):
                    p[3] += bytes.fromhex(d.group(2).replace(" ", ""))
                    if len(p[3]) >= p[2]:
                        check(len(p[3]) == p[2], f"log dump '{p[1]}' is longer than announced")
                        events.append(("dump", p[0], p[1], bytes(p[3])))
                        del pending[thread]
                    continue
                check(False, f"log dump '{p[1]}' in {path} is truncated")
            h = DUMP_HEAD.match(msg)
            if h:
                n = int(h.group(2))
                if n == 0:
                    events.append(("dump", subsys, h.group(1), b""))
                else:
                    pending[thread] = [subsys, h.group(1), n, bytearray()]
                continue
            s = SA_LINE.match(msg)
            if s:
                sa_kind[thread] = s.group(1)
                continue
            s = SPI_LINE.match(msg)
            if s and thread in sa_kind:
                events.append(("spi", sa_kind.pop(thread), s.group(1)))
                continue
            s = SUMMARY.match(msg)
            if s:
                events.append(("summary",) + s.groups())
    return events


IKE_KEYS = [("Sk_d secret", "sk_d"), ("Sk_ai secret", "sk_ai"), ("Sk_ar secret", "sk_ar"),
            ("Sk_ei secret", "sk_ei"), ("Sk_er secret", "sk_er"), ("Sk_pi secret", "sk_pi"),
            ("Sk_pr secret", "sk_pr")]
CHILD_KEYS = [("encryption initiator key", "encr_i"), ("integrity initiator key", "integ_i"),
              ("encryption responder key", "encr_r"), ("integrity responder key", "integ_r")]


def log_secrets(events):
    """IKE SA key sets and CHILD_SA key sets, in the order charon derived them."""
    ike, child = [], []
    last_dh = {"IKE": None, "CHD": None}
    cur = None
    for ev in events:
        if ev[0] == "dump":
            _, subsys, label, data = ev
            if subsys == "IKE" and label == "shared Diffie Hellman secret":
                last_dh["IKE"] = data
            elif subsys == "CHD" and label == "DH secret":
                last_dh["CHD"] = data
            elif subsys == "IKE" and label == "SKEYSEED":
                cur = {"g_ir": last_dh["IKE"], "skeyseed": data}
                ike.append(cur)
                last_dh["IKE"] = None
            elif subsys == "IKE" and cur is not None and label in dict(IKE_KEYS):
                cur[dict(IKE_KEYS)[label]] = data
            elif subsys == "CHD" and label == "seed":
                cur = {"seed": data, "g_ir": last_dh["CHD"], "spi_in": None, "spi_out": None}
                child.append(cur)
                last_dh["CHD"] = None
            elif subsys == "CHD" and cur is not None and label in dict(CHILD_KEYS):
                cur[dict(CHILD_KEYS)[label]] = data
        elif ev[0] == "spi" and child:
            c = child[-1]
            key = "spi_in" if ev[1] == "adding inbound" else "spi_out"
            if c[key] is None:
                c[key] = ev[2]
    return ike, child


def log_summaries(events):
    return [ev[1:] for ev in events if ev[0] == "summary"]


# ---------------------------------------------------------------- IKE messages

def parse_transforms(b):
    out, o = [], 0
    while o < len(b):
        check(o + 8 <= len(b), "short transform")
        last, tlen, ttype, tid = b[o], u16(b, o + 2), b[o + 4], u16(b, o + 6)
        check(8 <= tlen <= len(b) - o, "bad transform length")
        t = {"type": TRANSFORM_TYPES.get(ttype, ttype), "type_num": ttype,
             "id": TRANSFORM_IDS.get((ttype, tid), tid), "id_num": tid}
        a = o + 8
        while a < o + tlen:
            af, av = u16(b, a), u16(b, a + 2)
            check(af & 0x8000, "TLV transform attribute (only TV expected)")
            if af & 0x7FFF == 14:
                t["key_length"] = av
            else:
                t[f"attr_{af & 0x7FFF}"] = av
            a += 4
        out.append(t)
        o += tlen
        if last == 0:
            break
    return out


def parse_sa(b):
    props, o = [], 0
    while o < len(b):
        check(o + 8 <= len(b), "short proposal")
        last, plen, num, proto, spisize, ntrans = b[o], u16(b, o + 2), b[o + 4], b[o + 5], b[o + 6], b[o + 7]
        check(8 + spisize <= plen <= len(b) - o, "bad proposal length")
        spi = b[o + 8:o + 8 + spisize]
        tr = parse_transforms(b[o + 8 + spisize:o + plen])
        check(len(tr) == ntrans, "transform count mismatch")
        props.append({"number": num, "protocol": PROTOCOLS.get(proto, proto), "spi": spi.hex(),
                      "transforms": tr})
        o += plen
        if last == 0:
            break
    return {"proposals": props}


def parse_ts(b):
    n, out, o = b[0], [], 4
    for _ in range(n):
        ttype, proto, tlen = b[o], b[o + 1], u16(b, o + 2)
        alen = (tlen - 8) // 2
        out.append({"ts_type": ttype, "ip_protocol": proto, "start_port": u16(b, o + 4),
                    "end_port": u16(b, o + 6),
                    "start_addr": str(ipaddress.ip_address(b[o + 8:o + 8 + alen])),
                    "end_addr": str(ipaddress.ip_address(b[o + 8 + alen:o + 8 + 2 * alen]))})
        o += tlen
    return {"selectors": out}


def parse_body(ptype, body):
    name = PAYLOADS.get(ptype)
    if name == "SA":
        return parse_sa(body)
    if name == "KE":
        return {"dh_group": TRANSFORM_IDS.get((4, u16(body, 0)), u16(body, 0)),
                "key_exchange_len": len(body) - 4, "key_exchange": body[4:].hex()}
    if name in ("IDi", "IDr"):
        d = {"id_type": ID_TYPES.get(body[0], body[0]), "id_data": body[4:].hex()}
        if body[0] in (2, 3):
            d["id_text"] = body[4:].decode("ascii", "replace")
        return d
    if name == "AUTH":
        return {"auth_method": AUTH_METHODS.get(body[0], body[0]), "auth_data": body[4:].hex()}
    if name == "Nonce":
        return {"nonce": body.hex(), "nonce_len": len(body)}
    if name == "N":
        proto, spisize, ntype = body[0], body[1], u16(body, 2)
        return {"protocol": PROTOCOLS.get(proto, proto), "notify_type": ntype,
                "notify": NOTIFIES.get(ntype, "PRIVATE_USE" if ntype >= 40960 else "UNKNOWN"),
                "spi": body[4:4 + spisize].hex(), "notify_data": body[4 + spisize:].hex()}
    if name == "D":
        proto, spisize, n = body[0], body[1], u16(body, 2)
        return {"protocol": PROTOCOLS.get(proto, proto), "spi_size": spisize,
                "spis": [body[4 + i * spisize:4 + (i + 1) * spisize].hex() for i in range(n)]}
    if name == "V":
        return {"vendor_id": body.hex()}
    if name in ("TSi", "TSr"):
        return parse_ts(body)
    return {"data": body.hex()}


def walk(buf, first, base):
    """Generic payload chain starting at buf[0] with next-payload `first`; `base` is buf's offset
    in the message. Returns [(type, critical, body, offset)]."""
    out, o, np = [], 0, first
    while np != 0:
        check(o + 4 <= len(buf), f"payload chain runs past the end (type {np})")
        nxt, crit, plen = buf[o], bool(buf[o + 1] & 0x80), u16(buf, o + 2)
        check(4 <= plen <= len(buf) - o, f"bad payload length {plen} (type {np})")
        out.append((np, crit, buf[o + 4:o + plen], base + o))
        if np == 46:  # SK is the last payload; its next-payload field names the first inner one
            check(o + plen == len(buf), "SK payload is not last")
            return out, nxt
        o += plen
        np = nxt
    check(o == len(buf), "bytes after the last payload")
    return out, None


def describe(payloads):
    return [dict({"payload": PAYLOADS.get(t, t), "payload_type": t, "critical": c},
                 **({} if t == 46 else parse_body(t, b))) for t, c, b, _ in payloads]


# ---------------------------------------------------------------- crypto

def prf(alg, key, data):
    return hmac.new(key, data, PRF_HASH[alg]).digest()


def prf_plus(alg, key, seed, n):
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = prf(alg, key, t + seed + bytes([i]))
        out += t
        i += 1
    return out[:n]


def split(buf, lengths):
    out, o = [], 0
    for n in lengths:
        out.append(buf[o:o + n])
        o += n
    return out


def chosen(sa_body):
    """(prf id, encr key bytes incl. salt, DH name or None) of a one-proposal (response) SA."""
    p = parse_sa(sa_body)["proposals"]
    check(len(p) == 1, "a response SA payload must carry exactly one proposal")
    d = {t["type_num"]: t for t in p[0]["transforms"]}
    check(d[1]["id_num"] in GCM_ENCR, f"only AES-GCM-16 is handled here, got {d[1]['id']}")
    return (d[2]["id_num"] if 2 in d else None), d[1]["key_length"] // 8 + 4, (d[4]["id"] if 4 in d else None)


def gcm_open(keymat, iv, ct_icv, aad):
    return AESGCM(keymat[:-4]).decrypt(keymat[-4:] + iv, ct_icv, aad)


# ---------------------------------------------------------------- the session

def datagrams_from_pcap(path, left_addr):
    ike, esp, keepalives = [], [], 0
    t0 = None
    for pkt in rdpcap(path):
        ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
        udp = pkt.getlayer(UDP)
        if ip is None or udp is None or 500 not in (udp.sport, udp.dport) and 4500 not in (udp.sport, udp.dport):
            continue
        t0 = float(pkt.time) if t0 is None else t0
        data = bytes(udp.payload)
        d = {"t": round(float(pkt.time) - t0, 6),
             "from": "initiator" if ip.src == left_addr else "responder",
             "src": ip.src, "dst": ip.dst, "udp_src_port": udp.sport, "udp_dst_port": udp.dport}
        if 4500 in (udp.sport, udp.dport):
            if data == b"\xff":
                keepalives += 1
                continue
            if data[:4] == b"\0\0\0\0":
                d["non_esp_marker"] = True
                data = data[4:]
            else:
                d["spi"] = data[:4].hex()
                d["seq"] = u32(data, 4)
                d["hex"] = data.hex()
                esp.append(d)
                continue
        else:
            d["non_esp_marker"] = False
        d["hex"] = data.hex()
        ike.append(d)
    return ike, esp, keepalives


def natd_hash(spi_i, spi_r, addr, port):
    return hashlib.sha1(spi_i + spi_r + ipaddress.ip_address(addr).packed + port.to_bytes(2, "big")).digest()


class Session:
    def __init__(self, args):
        self.args = args
        self.psk = args.psk.encode()
        self.verified = []
        self.ike_sas = []     # dicts, JSON-ready at the end
        self.children = []
        self.by_spis = {}     # (spi_i, spi_r) -> IKE SA index
        self.pending = {}     # (ike sa, msgid) -> request info, waiting for its response
        self.n_decrypted = 0

    def ok(self, what):
        self.verified.append(what)

    def sa_of(self, spi_i, spi_r, exch):
        if exch == 34 and spi_r == bytes(8):
            return None
        key = (spi_i, spi_r)
        check(key in self.by_spis, f"message for unknown IKE SA {spi_i.hex()}/{spi_r.hex()}")
        return self.by_spis[key]

    def run(self, dgrams, log_ike, log_child):
        self.log_ike, self.log_child = log_ike, log_child
        init_req = None
        for i, d in enumerate(dgrams):
            msg = bytes.fromhex(d["hex"])
            check(len(msg) >= 28, "datagram shorter than an IKE header")
            spi_i, spi_r = msg[0:8], msg[8:16]
            np, ver, exch, flags, mid, length = msg[16], msg[17], msg[18], msg[19], u32(msg, 20), u32(msg, 24)
            check(ver == 0x20, "not IKEv2")
            check(length == len(msg), "IKE length field differs from the datagram")
            d.update({"index": i, "exchange": EXCHANGES.get(exch, exch), "message_id": mid,
                      "response": bool(flags & FLAG_R), "flag_initiator": bool(flags & FLAG_I),
                      "spi_i": spi_i.hex(), "spi_r": spi_r.hex()})
            outer, inner_np = walk(msg[28:], np, 28)
            d["payloads"] = describe(outer)
            if exch == 34:
                sa_idx = self.on_ike_sa_init(d, msg, outer, flags)
                if not d["response"]:
                    init_req = msg
            else:
                sa_idx = self.sa_of(spi_i, spi_r, exch)
            d["ike_sa"] = sa_idx
            inner = []
            if outer and outer[-1][0] == 46:
                inner = self.decrypt(d, msg, sa_idx, outer[-1], inner_np, flags)
            if exch == 35:
                self.on_ike_auth(d, sa_idx, inner, init_req)
            elif exch == 36:
                self.on_create_child(d, sa_idx, inner)
            self.roles_check(d, sa_idx, flags)

    def roles_check(self, d, sa_idx, flags):
        if sa_idx is None:
            check(d["from"] == "initiator" and flags & FLAG_I, "IKE_SA_INIT request from the initiator")
            return
        sa = self.ike_sas[sa_idx]
        check(bool(flags & FLAG_I) == (d["from"] == sa["initiator"]),
              f"datagram {d['index']}: I flag does not match the IKE SA's initiator")

    # -- IKE_SA_INIT

    def on_ike_sa_init(self, d, msg, outer, flags):
        get = {PAYLOADS.get(t): b for t, _, b, _ in outer}
        nonce = get["Nonce"]
        self.natd(d, msg, outer)
        if not d["response"]:
            self.init = {"ni": nonce, "spi_i": msg[0:8], "req": msg}
            return None
        prf_id, elen, dh = chosen(get["SA"])
        ni, nr, spi_i, spi_r = self.init["ni"], nonce, msg[0:8], msg[8:16]
        logged = self.log_ike[0]
        sa = {"created_in": "IKE_SA_INIT", "initiator": "initiator", "rekey_of": None,
              "spi_i": spi_i, "spi_r": spi_r, "ni": ni, "nr": nr, "dh_group": dh,
              "prf": TRANSFORM_IDS[(2, prf_id)], "prf_id": prf_id, "sk_e_len": elen,
              "resp_init": msg, **logged}
        skeyseed = prf(prf_id, ni + nr, logged["g_ir"])
        check(skeyseed == logged["skeyseed"], "SKEYSEED != prf(Ni | Nr, g^ir) for the first IKE SA")
        self.ok("IKE SA 0: SKEYSEED = prf(Ni | Nr, g^ir) with Ni, Nr from the IKE_SA_INIT Nonce payloads")
        self.derive_sk(0, sa, skeyseed)
        self.ike_sas.append(sa)
        self.by_spis[(spi_i, spi_r)] = 0
        self.by_spis[(spi_i, bytes(8))] = 0
        return 0

    def derive_sk(self, idx, sa, skeyseed):
        h = PRF_HASH[sa["prf_id"]]().digest_size
        lens = [h, 0, 0, sa["sk_e_len"], sa["sk_e_len"], h, h]
        keys = split(prf_plus(sa["prf_id"], skeyseed, sa["ni"] + sa["nr"] + sa["spi_i"] + sa["spi_r"],
                              sum(lens)), lens)
        for (_, name), k in zip(IKE_KEYS, keys):
            if name in ("sk_ai", "sk_ar"):
                check(sa.get(name, b"") == b"", f"{name} logged for an AEAD SA")
                sa[name] = b""
                continue
            check(sa.get(name) == k, f"IKE SA {idx}: {name} != prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)")
        self.ok(f"IKE SA {idx}: SK_d, SK_ei, SK_er, SK_pi, SK_pr = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) "
                f"({sa['prf']}, SK_e = {sa['sk_e_len']} bytes key+salt, no SK_a: AEAD)")

    def natd(self, d, msg, outer):
        spi_i, spi_r = msg[0:8], msg[8:16]
        res = []
        for t, _, b, _ in outer:
            if t != 41 or u16(b, 2) not in (16388, 16389):
                continue
            data = b[4 + b[1]:]
            src = u16(b, 2) == 16388
            addr, port = (d["src"], d["udp_src_port"]) if src else (d["dst"], d["udp_dst_port"])
            res.append({"notify": NOTIFIES[u16(b, 2)], "matches_packet": data == natd_hash(spi_i, spi_r, addr, port)})
        d["natd_check"] = res

    # -- SK payloads

    def decrypt(self, d, msg, sa_idx, sk, inner_np, flags):
        _, _, body, off = sk
        sa = self.ike_sas[sa_idx]
        key = sa["sk_ei"] if flags & FLAG_I else sa["sk_er"]
        check(len(body) >= 8 + 16, "SK payload too short")
        iv, ct_icv = body[:8], body[8:]
        aad = msg[:off + 4]
        try:
            pt = gcm_open(key, iv, ct_icv, aad)
        except Exception as e:  # noqa: BLE001 - any failure is a broken vector
            raise VectorError(f"datagram {d['index']}: SK payload does not decrypt: {e!r}")
        pad = pt[-1]
        check(pad + 1 <= len(pt), "SK pad length too large")
        inner_bytes = pt[:-(pad + 1)]
        d["sk"] = {"iv": iv.hex(), "icv": body[-16:].hex(), "aad_len": len(aad), "pad_length": pad,
                   "plaintext": pt.hex(), "inner_payloads_hex": inner_bytes.hex()}
        inner, _ = walk(inner_bytes, inner_np, 0)
        d["encrypted_payloads"] = describe(inner)
        self.n_decrypted += 1
        return inner

    # -- IKE_AUTH

    def on_ike_auth(self, d, sa_idx, inner, init_req):
        sa = self.ike_sas[sa_idx]
        get = {PAYLOADS.get(t): b for t, _, b, _ in inner}
        pad = prf(sa["prf_id"], self.psk, b"Key Pad for IKEv2")
        if not d["response"]:
            octets = init_req + sa["nr"] + prf(sa["prf_id"], sa["sk_pi"], get["IDi"])
            who = "initiator"
        else:
            octets = sa["resp_init"] + sa["ni"] + prf(sa["prf_id"], sa["sk_pr"], get["IDr"])
            who = "responder"
        auth = get["AUTH"]
        check(auth[0] == 2, "AUTH method is not SHARED_KEY_MIC")
        check(auth[4:] == prf(sa["prf_id"], pad, octets), f"{who} PSK AUTH does not verify")
        self.ok(f"IKE_AUTH {'response' if d['response'] else 'request'}: {who} AUTH = "
                f"prf(prf(PSK, \"Key Pad for IKEv2\"), IKE_SA_INIT {'response' if d['response'] else 'request'} | "
                f"{'Ni' if d['response'] else 'Nr'} | prf(SK_p{who[0]}, ID{who[0]}'))")
        if "SA" not in get:
            return
        spi = bytes.fromhex(parse_sa(get["SA"])["proposals"][0]["spi"])
        if not d["response"]:
            self.pending[(sa_idx, d["message_id"])] = {"spi": spi, "by": d["from"]}
            return
        req = self.pending.pop((sa_idx, d["message_id"]))
        _, elen, _ = chosen(get["SA"])
        self.add_child(d, sa_idx, "IKE_AUTH", req["by"], sa["ni"], sa["nr"], None,
                       spi_i=req["spi"], spi_r=spi, elen=elen)

    # -- CREATE_CHILD_SA

    def on_create_child(self, d, sa_idx, inner):
        get = {PAYLOADS.get(t): b for t, _, b, _ in inner}
        props = parse_sa(get["SA"])["proposals"]
        nonce = get["Nonce"]
        ke = get.get("KE")
        key = (sa_idx, d["message_id"])
        if not d["response"]:
            rekey = [b for t, _, b, _ in inner if t == 41 and u16(b, 2) == 16393]
            self.pending[key] = {"by": d["from"], "ni": nonce, "ke": ke,
                                 "spi": bytes.fromhex(props[0]["spi"]), "proto": props[0]["protocol"],
                                 "rekey_spi": rekey[0][4:4 + rekey[0][1]].hex() if rekey else None}
            return
        req = self.pending.pop(key)
        spi = bytes.fromhex(props[0]["spi"])
        prf_id, elen, dh = chosen(get["SA"])
        old = self.ike_sas[sa_idx]
        if req["proto"] == "IKE":
            idx = len(self.ike_sas)
            check(idx < len(self.log_ike), "no logged keys for the rekeyed IKE SA")
            logged = self.log_ike[idx]
            sa = {"created_in": "CREATE_CHILD_SA", "initiator": req["by"], "rekey_of": sa_idx,
                  "spi_i": req["spi"], "spi_r": spi, "ni": req["ni"], "nr": nonce, "dh_group": dh,
                  "prf": TRANSFORM_IDS[(2, prf_id)], "prf_id": prf_id, "sk_e_len": elen, **logged}
            skeyseed = prf(old["prf_id"], old["sk_d"], logged["g_ir"] + req["ni"] + nonce)
            check(skeyseed == logged["skeyseed"], "rekeyed SKEYSEED != prf(SK_d(old), g^ir | Ni | Nr)")
            self.ok(f"IKE SA {idx}: SKEYSEED = prf(SK_d of IKE SA {sa_idx}, g^ir (new) | Ni | Nr) with "
                    "Ni, Nr, SPIs from the decrypted CREATE_CHILD_SA")
            self.derive_sk(idx, sa, skeyseed)
            self.ike_sas.append(sa)
            self.by_spis[(sa["spi_i"], sa["spi_r"])] = idx
        else:
            self.add_child(d, sa_idx, "CREATE_CHILD_SA", req["by"], req["ni"], nonce,
                           req["rekey_spi"], spi_i=req["spi"], spi_r=spi, elen=elen,
                           pfs=dh is not None)

    def add_child(self, d, sa_idx, created_in, by, ni, nr, rekey_of, spi_i, spi_r, elen, pfs=False):
        idx = len(self.children)
        check(idx < len(self.log_child), "no logged keys for a CHILD_SA")
        lc = self.log_child[idx]
        sa = self.ike_sas[sa_idx]
        seed = (lc["g_ir"] if pfs else b"") + ni + nr
        check(pfs == (lc["g_ir"] is not None), f"CHILD_SA {idx}: PFS in the SA payload vs DH secret in the log")
        check(seed == lc["seed"], f"CHILD_SA {idx}: logged seed != [g^ir] | Ni | Nr from the messages")
        keymat = prf_plus(sa["prf_id"], sa["sk_d"], seed, 2 * elen)
        encr_i, encr_r = keymat[:elen], keymat[elen:]
        check(encr_i == lc["encr_i"] and encr_r == lc["encr_r"], f"CHILD_SA {idx}: KEYMAT mismatch")
        # The left charon's log names its own inbound/outbound SPIs.
        left_is_i = by == "initiator"
        left_in, left_out = (spi_i, spi_r) if left_is_i else (spi_r, spi_i)
        check(lc["spi_in"] == left_in.hex() and lc["spi_out"] == left_out.hex(),
              f"CHILD_SA {idx}: SPIs in the SA payloads differ from the ones charon installed")
        self.ok(f"CHILD_SA {idx} ({created_in}{', PFS' if pfs else ''}): KEYMAT = prf+(SK_d of IKE SA "
                f"{sa_idx}, {'g^ir | ' if pfs else ''}Ni | Nr) = encr_i | encr_r; SPIs match the SA payloads")
        other = "responder" if by == "initiator" else "initiator"
        self.children.append({
            "created_in": created_in, "ike_sa": sa_idx, "exchange_initiator": by,
            "rekey_of_spi": rekey_of, "pfs": pfs, "dh_shared_secret": lc["g_ir"], "ni": ni, "nr": nr,
            "keymat_seed": seed,
            "i_to_r": {"sender": by, "spi": spi_r.hex(), "encr_key": encr_i},
            "r_to_i": {"sender": other, "spi": spi_i.hex(), "encr_key": encr_r},
        })

    # -- ESP

    def check_esp(self, esp, inner_src, inner_dst):
        by_spi = {}
        for n, c in enumerate(self.children):
            for dirn in ("i_to_r", "r_to_i"):
                by_spi[c[dirn]["spi"]] = (n, c[dirn])
        for e in esp:
            check(e["spi"] in by_spi, f"ESP packet with unknown SPI {e['spi']}")
            n, dirn = by_spi[e["spi"]]
            check(dirn["sender"] == e["from"], f"ESP SPI {e['spi']} sent by the wrong side")
            raw = bytes.fromhex(e["hex"])
            pt = gcm_open(dirn["encr_key"], raw[8:16], raw[16:], raw[:8])
            padlen, nh = pt[-2], pt[-1]
            inner = pt[:-(padlen + 2)]
            check(nh == 4 and IP(inner).src in (inner_src, inner_dst), "ESP inner packet is not the ping")
            e.update({"child_sa": n, "next_header": nh, "inner_hex": inner.hex()})
        if esp:
            self.ok(f"{len(esp)} ESP packets (UDP-encapsulated) decrypt with the CHILD_SA keys for their SPI "
                    "(AES-GCM, nonce = salt | IV, AAD = SPI | seq) to the inner ICMP echo")


DATAGRAM_ORDER = ["index", "t", "from", "src", "dst", "udp_src_port", "udp_dst_port", "non_esp_marker",
                  "hex", "exchange", "message_id", "response", "flag_initiator", "spi_i", "spi_r",
                  "ike_sa", "strongswan_summary", "payloads", "natd_check", "sk", "encrypted_payloads"]


def ordered(d, order):
    check(set(d) <= set(order), f"unexpected datagram fields {set(d) - set(order)}")
    return {k: d[k] for k in order if k in d}


def hexify(v):
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, dict):
        return {k: hexify(x) for k, x in v.items()}
    if isinstance(v, list):
        return [hexify(x) for x in v]
    return v


def main():
    ap = argparse.ArgumentParser()
    for a in ("name", "pcap", "left-log", "right-log", "ike-proposal", "esp-proposal", "psk",
              "left", "right", "rekeyed-by", "out"):
        ap.add_argument("--" + a, required=True)
    args = ap.parse_args()
    left = dict(zip(("address", "id", "ts"), args.left.split(",")))
    right = dict(zip(("address", "id", "ts"), args.right.split(",")))

    lev, rev = parse_log(args.left_log), parse_log(args.right_log)
    l_ike, l_child = log_secrets(lev)
    r_ike, r_child = log_secrets(rev)
    check(len(l_ike) == 2 and len(l_child) == 2, f"expected 2 IKE and 2 CHILD key sets, got {len(l_ike)}, {len(l_child)}")
    s = Session(args)
    for a, b in zip(l_ike, r_ike):
        check(a == b, "the two charons logged different IKE SA secrets")
    for a, b in zip(l_child, r_child):
        check({k: v for k, v in a.items() if not k.startswith("spi")} ==
              {k: v for k, v in b.items() if not k.startswith("spi")} and
              a["spi_in"] == b["spi_out"] and a["spi_out"] == b["spi_in"],
              "the two charons logged different CHILD_SA secrets")
    s.ok("both charons logged identical g^ir, SKEYSEED, SK_* and CHILD_SA keys (mirrored SPIs)")

    dgrams, esp, keepalives = datagrams_from_pcap(args.pcap, left["address"])
    s.run(dgrams, l_ike, l_child)
    check(len(s.ike_sas) == 2 and len(s.children) == 2, "session did not create 2 IKE SAs and 2 CHILD_SAs")
    s.ok(f"all {s.n_decrypted} SK payloads decrypt with SK_ei/SK_er of their IKE SA (AES-GCM, "
         "AAD = IKE header | SK payload header, nonce = salt | IV)")
    s.check_esp(esp, "198.19.1.1", "198.19.2.1")

    # strongSwan's own one-line summary of every message, from the sender's log.
    sums = {"initiator": [x for x in log_summaries(lev) if x[0] == "generating"],
            "responder": [x for x in log_summaries(rev) if x[0] == "generating"]}
    for d in dgrams:
        verb, exch, kind, mid, text = sums[d["from"]].pop(0)
        check(exch == d["exchange"] and int(mid) == d["message_id"] and (kind == "response") == d["response"],
              f"datagram {d['index']}: charon's log says {exch} {kind} {mid}")
        d["strongswan_summary"] = f"{exch} {kind} {mid} [ {text} ]"
    s.ok("every datagram matches charon's 'generating <exchange> <request|response> <msgid>' line")

    ike_out = []
    for sa in s.ike_sas:
        ike_out.append({k: sa.get(k) for k in (
            "created_in", "initiator", "rekey_of", "dh_group", "prf", "spi_i", "spi_r", "ni", "nr",
            "g_ir", "skeyseed", "sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")})
    vec = {
        "schema": SCHEMA,
        "name": args.name,
        "generated_by": "deploy/lab/ike/capture_vectors.sh",
        "strongswan": "5.9.8 (Debian bookworm), charon-systemd, kernel-libipsec",
        "ike_proposal": args.ike_proposal,
        "esp_proposal": args.esp_proposal,
        "psk": args.psk,
        "initiator": dict(left, id_type="ID_FQDN"),
        "responder": dict(right, id_type="ID_FQDN"),
        "rekeys_and_delete_by": "initiator" if args.rekeyed_by == "left" else "responder",
        "datagrams": [ordered(d, DATAGRAM_ORDER) for d in dgrams],
        "ike_sas": ike_out,
        "child_sas": s.children,
        "esp": esp,
        "nat_keepalives_seen": keepalives,
        "verified": s.verified,
    }
    with open(args.out, "w") as f:
        json.dump(hexify(vec), f, indent=1)
        f.write("\n")
    print(f"capture: {args.out}: {len(dgrams)} IKE datagrams, {len(esp)} ESP, {len(s.verified)} checks passed")


if __name__ == "__main__":
    try:
        main()
    except VectorError as e:
        sys.exit(f"capture_vectors.py: vector is not coherent: {e}")
