//! `x-forwarded-client-cert` as Istio's gateway sets it, and the client certificate's
//! identity for authorization.
//!
//! Istio configures the gateway's HTTP connection manager with
//! `forward_client_cert_details: SANITIZE_SET` and `set_current_client_cert_details
//! {subject, cert, uri, dns}` (pilot `createGatewayHTTPFilterChainOpts`). Envoy then
//! (`ConnectionManagerUtility::mutateXfccRequestHeader`) removes any incoming XFCC, and on
//! a TLS connection whose client presented a certificate sets it to one element, `;`
//! separated, in this order:
//!
//! - `By=<uri>` for each URI SAN of the gateway's own certificate (none: no `By`);
//! - `Hash=<hex>`: SHA-256 of the client certificate (DER), lower-case hex;
//! - `Cert="<pem>"`: the client certificate, PEM as OpenSSL writes it (64-column base64,
//!   `\n` line ends), every byte but ALPHA, DIGIT, `*`, `-`, `.`, `_` percent-encoded
//!   (Envoy's `PercentEncoding::urlEncode`);
//! - `Subject="<dn>"`: the subject in RFC 2253 form as `X509_NAME_print_ex(..,
//!   XN_FLAG_RFC2253)` prints it (last RDN first, `,` between RDNs, `+` inside one), always
//!   present, empty when the subject is;
//! - `URI=<uri>` for each URI SAN of the client certificate, or one `URI=` when it has
//!   none;
//! - `DNS=<name>` for each DNS SAN (none: no `DNS`).
//!
//! Simplified: only the common attribute types (CN, O, OU, C, ST, L, DC, UID,
//! emailAddress, serialNumber, street, ...; see `short_name`) print by short name; any
//! other prints as its dotted OID with its value as `#` and the hex of its DER, which is
//! what OpenSSL does only for types it has no name for (it knows more, e.g. `role`). Values
//! in UniversalString, or not strings at all, are dumped the same way.

use std::fmt::Write as _;

use http::HeaderValue;
use mesh_core::meshconfig::ForwardClientCertDetails;
use mesh_tls::rustls::crypto::hash::HashAlgorithm;
use mesh_tls::rustls::SupportedCipherSuite;
use x509_parser::asn1_rs::{Class, Tag};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// The header's name.
pub(crate) const XFCC: http::header::HeaderName =
    http::header::HeaderName::from_static("x-forwarded-client-cert");

/// A request's `x-forwarded-client-cert` as Envoy's `mutateXfccRequestHeader` leaves it
/// (`conn_manager_utility.cc`), for a gateway (`gatewayTopology.forwardClientCertDetails`)
/// or a mesh server (`proxyHeaders.forwardedClientCert`): ALWAYS_FORWARD_ONLY keeps it as
/// sent; SANITIZE, and any other mode on a connection without a verified client
/// certificate (`mine` is `None`: the details of this connection's client certificate),
/// remove it; FORWARD_ONLY keeps it; APPEND_FORWARD appends `mine`; SANITIZE_SET replaces
/// it with `mine`.
pub(crate) fn mutate(
    headers: &mut http::HeaderMap,
    mode: ForwardClientCertDetails,
    mine: Option<&HeaderValue>,
) {
    use ForwardClientCertDetails as F;
    let mine = match (mode, mine) {
        (F::AlwaysForwardOnly, _) => return,
        (F::Sanitize, _) | (_, None) => {
            headers.remove(XFCC);
            return;
        }
        (F::ForwardOnly, Some(_)) => return,
        (_, Some(mine)) => mine,
    };
    if mode == F::AppendForward {
        append(headers, mine);
    } else {
        headers.insert(XFCC, mine.clone());
    }
}

/// APPEND_FORWARD: the caller's non-empty values are kept, joined with `,` as Envoy's
/// header map joins a repeated header, and `ours` goes last: one allocation when the
/// caller sent one, none otherwise.
fn append(headers: &mut http::HeaderMap, ours: &HeaderValue) {
    let mut len = 0;
    for v in headers.get_all(XFCC).iter().filter(|v| !v.is_empty()) {
        len += v.len() + 1;
    }
    if len == 0 {
        headers.insert(XFCC, ours.clone());
        return;
    }
    // exactly sized, so `Bytes::from` keeps the buffer (no second allocation)
    let mut joined = Vec::with_capacity(len + ours.len());
    for v in headers.get_all(XFCC).iter().filter(|v| !v.is_empty()) {
        joined.extend_from_slice(v.as_bytes());
        joined.push(b',');
    }
    joined.extend_from_slice(ours.as_bytes());
    // every byte came from a valid header value, or is `,`
    match HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
        Ok(v) => {
            headers.insert(XFCC, v);
        }
        Err(_) => {
            headers.insert(XFCC, ours.clone());
        }
    }
}

/// The URI SANs of the gateway's own certificate (leaf, DER): the XFCC `By` keys.
pub(crate) fn uri_sans(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    sans(&cert).0
}

/// The XFCC value for a client certificate (leaf, DER), `by` the gateway's own URI SANs;
/// `with_cert`: with the PEM (`Cert=`, which a gateway's SANITIZE_SET sets and a sidecar's
/// inbound `set_current_client_cert_details` does not). `None` if the certificate cannot
/// be parsed (it was verified, so this is not expected).
pub(crate) fn header_value(by: &[String], leaf: &[u8], with_cert: bool) -> Option<HeaderValue> {
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    let mut out = String::with_capacity(leaf.len() * 2);
    for uri in by {
        push(&mut out, "By=", uri);
    }
    push(&mut out, "Hash=", &sha256_hex(leaf)?);
    if with_cert {
        out.push_str(";Cert=\"");
        url_encode(&pem(leaf), &mut out);
        out.push('"');
    }
    out.push_str(";Subject=\"");
    rfc2253(cert.subject(), &mut out);
    out.push('"');
    let (uris, dns) = sans(&cert);
    if uris.is_empty() {
        out.push_str(";URI=");
    }
    for u in &uris {
        push(&mut out, "URI=", u);
    }
    for d in &dns {
        push(&mut out, "DNS=", d);
    }
    HeaderValue::from_str(&out).ok()
}

fn push(out: &mut String, key: &str, value: &str) {
    if !out.is_empty() {
        out.push(';');
    }
    out.push_str(key);
    out.push_str(value);
}

/// URI and DNS SANs, in certificate order.
fn sans(cert: &X509Certificate<'_>) -> (Vec<String>, Vec<String>) {
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => uris.push((*u).to_owned()),
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                _ => {}
            }
        }
    }
    (uris, dns)
}

/// SHA-256 with the TLS provider's hash (aws-lc, as everywhere else).
pub(crate) fn sha256(data: &[u8]) -> Option<Vec<u8>> {
    let provider = mesh_tls::provider();
    let hash = provider.cipher_suites.iter().find_map(|s| match s {
        SupportedCipherSuite::Tls13(s)
            if s.common.hash_provider.algorithm() == HashAlgorithm::SHA256 =>
        {
            Some(s.common.hash_provider)
        }
        _ => None,
    })?;
    Some(hash.hash(data).as_ref().to_vec())
}

/// [`sha256`], lower-case hex.
fn sha256_hex(data: &[u8]) -> Option<String> {
    let digest = sha256(data)?;
    let mut hex = String::with_capacity(64);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    Some(hex)
}

/// PEM as OpenSSL's `PEM_write_bio_X509` writes it.
fn pem(der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(B64[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Envoy's `Http::Utility::PercentEncoding::urlEncode`: all but ALPHA, DIGIT, `*-._`.
fn url_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// A distinguished name as `X509_NAME_print_ex(XN_FLAG_RFC2253)` prints it: OpenSSL's
/// `XN_FLAG_DN_REV` reverses its flat list of attributes, so the attributes of a
/// multi-valued RDN come out reversed too.
fn rfc2253(name: &X509Name<'_>, out: &mut String) {
    let rdns: Vec<_> = name.iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let attrs: Vec<_> = rdn.iter().collect();
        for (j, atv) in attrs.into_iter().rev().enumerate() {
            if j > 0 {
                out.push('+');
            }
            attribute(atv, out);
        }
    }
}

fn attribute(atv: &AttributeTypeAndValue<'_>, out: &mut String) {
    let oid = atv.attr_type().to_id_string();
    match short_name(&oid) {
        Some(sn) => out.push_str(sn),
        None => out.push_str(&oid),
    }
    out.push('=');
    let value = atv.attr_value();
    let data = value.data;
    let (class, tag) = (value.header.class(), value.header.tag());
    let text: Option<String> = if class != Class::Universal {
        None
    } else {
        match tag {
            Tag::Utf8String
            | Tag::PrintableString
            | Tag::Ia5String
            | Tag::NumericString
            | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
            // Latin-1, as OpenSSL reads T61String
            Tag::T61String => Some(data.iter().map(|b| char::from(*b)).collect()),
            Tag::BmpString if data.len() % 2 == 0 => {
                char::decode_utf16(data.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])))
                    .collect::<Result<String, _>>()
                    .ok()
            }
            _ => None,
        }
    };
    match text {
        Some(t) if short_name(&oid).is_some() => escape(&t, out),
        // OpenSSL dumps the DER of values of unknown types or fields (DUMP_UNKNOWN_FIELDS)
        _ => {
            out.push('#');
            let tag = tag.0;
            if class == Class::Universal && tag < 31 {
                let constructed = if value.header.is_constructed() {
                    0x20
                } else {
                    0
                };
                let _ = write!(out, "{:02X}", tag as u8 | constructed);
                let len = data.len();
                if len < 0x80 {
                    let _ = write!(out, "{len:02X}");
                } else {
                    let bytes = len.to_be_bytes();
                    let skip = bytes.iter().take_while(|b| **b == 0).count();
                    let _ = write!(out, "{:02X}", 0x80 | (bytes.len() - skip));
                    for b in &bytes[skip..] {
                        let _ = write!(out, "{b:02X}");
                    }
                }
            }
            for b in data {
                let _ = write!(out, "{b:02X}");
            }
        }
    }
}

/// RFC 2253 escaping as OpenSSL's `ASN1_STRFLGS_RFC2253` does it: `,+"\<>;` with a
/// backslash, a leading `#` or space and a trailing space with a backslash, control
/// characters and every byte of a non-ASCII character as `\XX`.
fn escape(s: &str, out: &mut String) {
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == bytes.len();
        match b {
            b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b'#' if first => out.push_str("\\#"),
            b' ' if first || last => out.push_str("\\ "),
            0..=0x1f | 0x7f.. => {
                let _ = write!(out, "\\{b:02X}");
            }
            _ => out.push(char::from(b)),
        }
    }
}

/// OpenSSL's short names (`XN_FLAG_FN_SN`) of the attribute types certificates carry.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.13" => "description",
        "2.5.4.15" => "businessCategory",
        "2.5.4.17" => "postalCode",
        "2.5.4.41" => "name",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "2.5.4.97" => "organizationIdentifier",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.3.6.1.4.1.311.60.2.1.1" => "jurisdictionL",
        "1.3.6.1.4.1.311.60.2.1.2" => "jurisdictionST",
        "1.3.6.1.4.1.311.60.2.1.3" => "jurisdictionC",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_is_envoys() {
        // Envoy's PercentEncoding::urlEncode keeps ALPHA, DIGIT and *-._ only
        let mut out = String::new();
        url_encode("-----BEGIN CERTIFICATE-----\na+b/c=\n", &mut out);
        assert_eq!(out, "-----BEGIN%20CERTIFICATE-----%0Aa%2Bb%2Fc%3D%0A");
    }

    #[test]
    fn pem_lines_are_64_columns() {
        // 61 bytes: 84 base64 characters (the last two `=`), 64 on the first line
        let der = vec![0xabu8; 61];
        let p = pem(&der);
        let lines: Vec<_> = p.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2].len(), 84 - 64);
        assert!(lines[2].ends_with("qw=="), "{}", lines[2]);
        assert_eq!(lines[3], "-----END CERTIFICATE-----");
        assert_eq!(lines.len(), 4);
        assert!(p.ends_with("-----\n"));
        let mut small = String::new();
        for (der, want) in [(&b"M"[..], "TQ=="), (b"Ma", "TWE="), (b"Man", "TWFu")] {
            small.clear();
            small.push_str(pem(der).lines().nth(1).unwrap());
            assert_eq!(small, want);
        }
    }

    #[test]
    fn rfc2253_escapes() {
        let mut out = String::new();
        escape("#a, b+c\"d\\e<f>g;h ", &mut out);
        assert_eq!(out, "\\#a\\, b\\+c\\\"d\\\\e\\<f\\>g\\;h\\ ");
        out.clear();
        escape(" é\u{1}", &mut out);
        assert_eq!(out, "\\ \\C3\\A9\\01");
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_hex(b"").unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
