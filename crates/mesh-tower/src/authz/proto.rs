//! The few protobuf wire-format pieces the gRPC ext_authz client needs (varints and
//! length-delimited fields), written by hand: the messages are small and fixed
//! (`envoy.service.auth.v3.CheckRequest` / `CheckResponse`), so no code generator or
//! runtime is pulled in. Encoding follows the protobuf encoding guide: a field is its key
//! (`field << 3 | wire type`) as a varint, then a varint value (type 0) or a varint length
//! and that many bytes (type 2); proto3 scalars at their default are not written.

/// A message being written.
#[derive(Debug, Default)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

impl Writer {
    fn key(&mut self, field: u32, wire_type: u8) {
        varint(&mut self.0, u64::from(field) << 3 | u64::from(wire_type));
    }

    /// A `string` (or `bytes`) field; empty is the default and not written.
    pub(crate) fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    /// A `bytes` field; empty is not written.
    pub(crate) fn bytes(&mut self, field: u32, b: &[u8]) {
        if b.is_empty() {
            return;
        }
        self.key(field, 2);
        varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
    }

    /// An `int64`, `int32`, `uint32` or enum field (negative numbers as ten-byte two's
    /// complement, as protobuf writes them); zero is not written.
    pub(crate) fn int(&mut self, field: u32, v: i64) {
        if v == 0 {
            return;
        }
        self.key(field, 0);
        varint(&mut self.0, v as u64);
    }

    /// An embedded message, written even when empty (its presence is meaningful).
    pub(crate) fn message(&mut self, field: u32, f: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        f(&mut inner);
        self.key(field, 2);
        varint(&mut self.0, inner.0.len() as u64);
        self.0.extend_from_slice(&inner.0);
    }

    /// One entry of a `map<string, string>` field.
    pub(crate) fn map_entry(&mut self, field: u32, key: &str, value: &str) {
        self.message(field, |e| {
            e.string(1, key);
            e.string(2, value);
        });
    }
}

/// A field's value as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 2: a string, bytes, an embedded message or a packed list.
    Bytes(&'a [u8]),
    /// Wire types 1 and 5 (not used by these messages; skipped).
    Fixed,
}

impl<'a> Value<'a> {
    /// The bytes of a length-delimited field (empty for anything else).
    pub(crate) fn bytes(self) -> &'a [u8] {
        match self {
            Value::Bytes(b) => b,
            _ => &[],
        }
    }

    /// The number of a varint field (0 for anything else).
    pub(crate) fn int(self) -> i64 {
        match self {
            Value::Varint(v) => v as i64,
            _ => 0,
        }
    }

    /// A string field (invalid UTF-8 is replaced).
    pub(crate) fn string(self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }
}

/// The message is not valid protobuf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

fn read_varint(buf: &[u8], at: &mut usize) -> Result<u64, Malformed> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*at).ok_or(Malformed)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(Malformed)
}

/// The fields of a message, in order (repeated fields appear once per value).
pub(crate) fn fields(buf: &[u8]) -> Result<Vec<(u32, Value<'_>)>, Malformed> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let key = read_varint(buf, &mut at)?;
        let field = u32::try_from(key >> 3).map_err(|_| Malformed)?;
        let value = match key & 7 {
            0 => Value::Varint(read_varint(buf, &mut at)?),
            1 => {
                at = at
                    .checked_add(8)
                    .filter(|e| *e <= buf.len())
                    .ok_or(Malformed)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(read_varint(buf, &mut at)?).map_err(|_| Malformed)?;
                let end = at
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or(Malformed)?;
                let b = &buf[at..end];
                at = end;
                Value::Bytes(b)
            }
            5 => {
                at = at
                    .checked_add(4)
                    .filter(|e| *e <= buf.len())
                    .ok_or(Malformed)?;
                Value::Fixed
            }
            _ => return Err(Malformed),
        };
        out.push((field, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte strings from the protobuf encoding guide and worked by hand.
    #[test]
    fn encodes_as_the_guide_says() {
        // "message Test1 { int32 a = 1; }" with a = 150: 08 96 01
        let mut w = Writer::default();
        w.int(1, 150);
        assert_eq!(w.0, [0x08, 0x96, 0x01]);
        // "message Test2 { string b = 2; }" with b = "testing": 12 07 74 65 73 74 69 6e 67
        let mut w = Writer::default();
        w.string(2, "testing");
        assert_eq!(w.0, b"\x12\x07testing");
        // "message Test3 { Test1 c = 3; }" with c.a = 150: 1a 03 08 96 01
        let mut w = Writer::default();
        w.message(3, |m| m.int(1, 150));
        assert_eq!(w.0, [0x1a, 0x03, 0x08, 0x96, 0x01]);
        // a negative int64 is ten bytes
        let mut w = Writer::default();
        w.int(9, -1);
        assert_eq!(w.0.len(), 11);
        assert_eq!(w.0[0], 9 << 3);
        // defaults are not written; an empty message is
        let mut w = Writer::default();
        w.int(1, 0);
        w.string(2, "");
        w.message(4, |_| {});
        assert_eq!(w.0, [0x22, 0x00]);
        // a map entry is a message of key (1) and value (2)
        let mut w = Writer::default();
        w.map_entry(3, "a", "b");
        assert_eq!(w.0, [0x1a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b']);
    }

    #[test]
    fn reads_what_it_writes_and_refuses_garbage() {
        let mut w = Writer::default();
        w.int(1, 7);
        w.message(2, |m| m.string(3, "body"));
        w.string(5, "x");
        w.string(5, "y");
        let f = fields(&w.0).unwrap();
        assert_eq!(f[0], (1, Value::Varint(7)));
        let inner = fields(f[1].1.bytes()).unwrap();
        assert_eq!(inner[0].1.string(), "body");
        assert_eq!((f[2].1.string(), f[3].1.string()), ("x".into(), "y".into()));
        // fixed-width fields are skipped
        assert_eq!(
            fields(&[0x09, 1, 2, 3, 4, 5, 6, 7, 8, 0x08, 0x01]).unwrap()[1],
            (1, Value::Varint(1))
        );
        for bad in [
            &[0x0a, 0x05, b'a'][..], // length past the end
            &[0x08][..],             // varint missing
            &[0x0b][..],             // wire type 3 (groups) is not used
            &[0xff; 11][..],         // varint too long
        ] {
            assert_eq!(fields(bad), Err(Malformed), "{bad:?}");
        }
    }
}
