//! A lenient parser of AMQP content headers (the frame carrying a message's properties and
//! headers): a short string that is not UTF-8 — a header *name*, `type`, `message_id`, any
//! short-string property — is escaped (`\xff`) instead of failing the parse, and reported.
//!
//! Written by hand because no crate parses content headers leniently: amq-protocol's
//! `parse_content_header` (which lapin uses) turns every short string into a `String` and
//! fails on invalid UTF-8, and lapin then drops the whole connection. RabbitMQ accepts such
//! bytes from any client, so a message carrying them reaches us; this parser lets the rescue
//! path (`rescue`) and the operator calls (`admin`) read it anyway. Only the content header
//! and `basic.get-ok` (whose exchange and routing key are short strings) are parsed here;
//! other method frames are parsed with amq-protocol.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString};

/// A content header, with every short string made valid.
#[derive(Debug)]
pub(crate) struct ContentHeader {
    /// The size of the body that follows, in bytes.
    pub(crate) body_size: u64,
    /// The properties and headers; invalid UTF-8 escaped as `\xNN`.
    pub(crate) properties: BasicProperties,
    /// What was not UTF-8, one line each, with the original bytes in hex. Empty when lapin
    /// could have read the header itself.
    pub(crate) problems: Vec<String>,
}

/// Why a content header could not be parsed at all (truncated or of an unknown field type).
#[derive(Debug, thiserror::Error)]
#[error("malformed content header: {0}")]
pub(crate) struct Malformed(String);

/// Parses the payload of a content header frame.
pub(crate) fn content_header(payload: &[u8]) -> Result<ContentHeader, Malformed> {
    let mut reader = Reader { bytes: payload, problems: Vec::new() };
    let _class = reader.u16()?;
    let _weight = reader.u16()?;
    let body_size = reader.u64()?;
    let flags = reader.u16()?;
    let has = |index: u16| flags & (1 << (15 - index)) != 0;
    let mut properties = BasicProperties::default();
    if has(0) {
        properties = properties.with_content_type(reader.short_string("the `content_type` property")?);
    }
    if has(1) {
        properties = properties.with_content_encoding(reader.short_string("the `content_encoding` property")?);
    }
    if has(2) {
        properties = properties.with_headers(reader.table("headers")?);
    }
    if has(3) {
        properties = properties.with_delivery_mode(reader.u8()?);
    }
    if has(4) {
        properties = properties.with_priority(reader.u8()?);
    }
    if has(5) {
        properties = properties.with_correlation_id(reader.short_string("the `correlation_id` property")?);
    }
    if has(6) {
        properties = properties.with_reply_to(reader.short_string("the `reply_to` property")?);
    }
    if has(7) {
        properties = properties.with_expiration(reader.short_string("the `expiration` property")?);
    }
    if has(8) {
        properties = properties.with_message_id(reader.short_string("the `message_id` property")?);
    }
    if has(9) {
        properties = properties.with_timestamp(reader.u64()?);
    }
    if has(10) {
        properties = properties.with_type(reader.short_string("the `type` property")?);
    }
    if has(11) {
        properties = properties.with_user_id(reader.short_string("the `user_id` property")?);
    }
    if has(12) {
        properties = properties.with_app_id(reader.short_string("the `app_id` property")?);
    }
    if has(13) {
        properties = properties.with_cluster_id(reader.short_string("the `cluster_id` property")?);
    }
    Ok(ContentHeader { body_size, properties, problems: reader.problems })
}

/// The arguments of a `basic.get-ok`, with short strings made valid: the exchange and the
/// routing key are short strings too (a topic binding `#` routes any bytes).
#[derive(Debug)]
pub(crate) struct GetOk {
    /// The delivery tag.
    pub(crate) delivery_tag: u64,
    /// The exchange the message was published to.
    pub(crate) exchange: String,
    /// The routing key it was published with.
    pub(crate) routing_key: String,
    /// What was not UTF-8, as in [`ContentHeader::problems`].
    pub(crate) problems: Vec<String>,
}

/// The class and method ids that start a `basic.get-ok` method frame.
pub(crate) const GET_OK: [u8; 4] = [0, 60, 0, 71];

/// Parses the payload of a `basic.get-ok` method frame (starting with [`GET_OK`]).
pub(crate) fn get_ok(payload: &[u8]) -> Result<GetOk, Malformed> {
    let mut reader = Reader { bytes: payload, problems: Vec::new() };
    if reader.array::<4>()? != GET_OK {
        return Err(Malformed("not a basic.get-ok".into()));
    }
    let delivery_tag = reader.u64()?;
    let _redelivered = reader.u8()?;
    let exchange = reader.short_string("the exchange")?.to_string();
    let routing_key = reader.short_string("the routing key")?.to_string();
    let _message_count = reader.u32()?;
    Ok(GetOk { delivery_tag, exchange, routing_key, problems: reader.problems })
}

/// `bytes` as text: valid UTF-8 kept, every other byte written `\xNN`.
pub(crate) fn escape(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        for byte in chunk.invalid() {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    }
    text
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect::<Vec<_>>().join(" ")
}

/// `text` cut to at most 255 bytes at a character boundary (the limit of a short string).
fn short(mut text: String) -> ShortString {
    let mut end = text.len().min(usize::from(u8::MAX));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    ShortString::from(text)
}

struct Reader<'a> {
    bytes: &'a [u8],
    problems: Vec<String>,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], Malformed> {
        if self.bytes.len() < count {
            return Err(Malformed(format!("{count} bytes expected, {} left", self.bytes.len())));
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn long_bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let length = usize::try_from(self.u32()?).map_err(|_| Malformed("a length beyond memory".into()))?;
        self.take(length)
    }

    /// A short string; one that is not UTF-8 is escaped and reported as `what`.
    fn short_string(&mut self, what: &str) -> Result<ShortString, Malformed> {
        let length = usize::from(self.u8()?);
        let bytes = self.take(length)?;
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(ShortString::from(text)),
            Err(_) => {
                let escaped = escape(bytes);
                self.problems.push(format!("{what} is not valid UTF-8: `{escaped}` (bytes {})", hex(bytes)));
                Ok(short(escaped))
            }
        }
    }

    fn table(&mut self, path: &str) -> Result<FieldTable, Malformed> {
        let bytes = self.long_bytes()?;
        let mut inner = Reader { bytes, problems: Vec::new() };
        let mut table = FieldTable::default();
        while !inner.bytes.is_empty() {
            let name = inner.short_string(&format!("the name of a field in {path}"))?;
            let value = inner.value(&format!("{path} field `{name}`"))?;
            table.insert(name, value);
        }
        self.problems.append(&mut inner.problems);
        Ok(table)
    }

    fn value(&mut self, path: &str) -> Result<AMQPValue, Malformed> {
        Ok(match self.u8()? {
            b't' => AMQPValue::Boolean(self.u8()? != 0),
            b'b' => AMQPValue::ShortShortInt(i8::from_be_bytes(self.array()?)),
            b'B' => AMQPValue::ShortShortUInt(self.u8()?),
            b's' | b'U' => AMQPValue::ShortInt(i16::from_be_bytes(self.array()?)),
            b'u' => AMQPValue::ShortUInt(self.u16()?),
            b'I' => AMQPValue::LongInt(i32::from_be_bytes(self.array()?)),
            b'i' => AMQPValue::LongUInt(self.u32()?),
            b'L' | b'l' => AMQPValue::LongLongInt(i64::from_be_bytes(self.array()?)),
            b'f' => AMQPValue::Float(f32::from_be_bytes(self.array()?)),
            b'd' => AMQPValue::Double(f64::from_be_bytes(self.array()?)),
            b'D' => AMQPValue::DecimalValue(DecimalValue { scale: self.u8()?, value: self.u32()? }),
            b'S' => AMQPValue::LongString(LongString::from(self.long_bytes()?.to_vec())),
            b'x' => AMQPValue::ByteArray(ByteArray::from(self.long_bytes()?.to_vec())),
            b'T' => AMQPValue::Timestamp(self.u64()?),
            b'V' => AMQPValue::Void,
            b'F' => AMQPValue::FieldTable(self.table(path)?),
            b'A' => {
                let bytes = self.long_bytes()?;
                let mut inner = Reader { bytes, problems: Vec::new() };
                let mut values = Vec::new();
                while !inner.bytes.is_empty() {
                    values.push(inner.value(path)?);
                }
                self.problems.append(&mut inner.problems);
                AMQPValue::FieldArray(FieldArray::from(values))
            }
            other => return Err(Malformed(format!("{path} has the unknown field type {other:#04x}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(flags: u16, properties: &[u8]) -> Vec<u8> {
        let mut payload = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
        payload.extend_from_slice(&flags.to_be_bytes());
        payload.extend_from_slice(properties);
        payload
    }

    #[test]
    fn invalid_utf8_in_type_and_message_id_is_escaped_and_reported() {
        // message_id (bit 8) = c3 28, type (bit 10) = "probe." ff
        let mut properties = vec![2, 0xc3, 0x28];
        properties.extend_from_slice(&[7, b'p', b'r', b'o', b'b', b'e', b'.', 0xff]);
        let parsed = content_header(&header((1 << 7) | (1 << 5), &properties)).expect("parses");
        assert_eq!(parsed.body_size, 5);
        assert_eq!(parsed.properties.message_id().as_ref().map(ShortString::as_str), Some("\\xc3("));
        assert_eq!(parsed.properties.kind().as_ref().map(ShortString::as_str), Some("probe.\\xff"));
        assert_eq!(parsed.problems.len(), 2, "{:?}", parsed.problems);
        assert!(parsed.problems[1].contains("`type`") && parsed.problems[1].contains("70 72 6f 62 65 2e ff"));
    }

    #[test]
    fn invalid_utf8_in_a_header_name_is_escaped_and_reported() {
        // headers (bit 2): { "x-" ff fe : S "v" }
        let table = [4, b'x', b'-', 0xff, 0xfe, b'S', 0, 0, 0, 1, b'v'];
        let mut properties = (table.len() as u32).to_be_bytes().to_vec();
        properties.extend_from_slice(&table);
        let parsed = content_header(&header(1 << 13, &properties)).expect("parses");
        let headers = parsed.properties.headers().clone().expect("headers");
        assert!(headers.inner().contains_key("x-\\xff\\xfe"), "{headers:?}");
        assert!(parsed.problems[0].contains("name of a field in headers"), "{:?}", parsed.problems);
    }

    #[test]
    fn a_readable_header_has_no_problems_and_a_truncated_one_is_malformed() {
        let parsed = content_header(&header(1 << 15, &[4, b'j', b's', b'o', b'n'])).expect("parses");
        assert!(parsed.problems.is_empty());
        assert!(content_header(&header(1 << 15, &[9, b'j'])).is_err());
    }
}
