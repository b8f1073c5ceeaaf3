//! A tiny raw AMQP publisher for tests: it can put bytes on the wire that lapin's typed API
//! cannot produce (invalid UTF-8 in a short string), as any other client may. Frames are
//! generated with amq-protocol; every `~` byte of the publish and content header frames is
//! then replaced, in order, by the given bytes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame, ProtocolVersion, WriteContext, gen_frame, parse_frame};
use amq_protocol::protocol::{AMQPClass, BasicProperties, basic, channel, confirm, connection};
use amq_protocol::uri::AMQPUri;

fn encode(frame: &AMQPFrame) -> Vec<u8> {
    gen_frame(frame)(WriteContext::from(Vec::new())).expect("encode a frame").into_inner().0
}

fn read_method(stream: &mut TcpStream) -> AMQPClass {
    loop {
        let mut head = [0_u8; 7];
        stream.read_exact(&mut head).expect("read a frame header");
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        let mut frame = head.to_vec();
        frame.resize(7 + size + 1, 0);
        stream.read_exact(&mut frame[7..]).expect("read a frame");
        match parse_frame(frame.as_slice()).expect("parse a frame").1 {
            AMQPFrame::Method(_, method) => return method,
            AMQPFrame::Heartbeat => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Publishes one message to `exchange` with `routing_key` and waits for the broker's confirm.
/// Each `~` in the encoded `basic.publish` and content header (put them into the routing key
/// or `properties`) is replaced by the next byte of `replacement`.
pub fn publish(
    url: &str,
    exchange: &str,
    routing_key: &str,
    properties: BasicProperties,
    body: &[u8],
    replacement: &[u8],
) {
    let uri: AMQPUri = url.parse().expect("an AMQP URL");
    let mut stream = TcpStream::connect((uri.authority.host.as_str(), uri.authority.port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let send = |stream: &mut TcpStream, frame: AMQPFrame| stream.write_all(&encode(&frame)).expect("write");
    send(&mut stream, AMQPFrame::ProtocolHeader(ProtocolVersion::amqp_0_9_1()));
    read_method(&mut stream);
    let user = &uri.authority.userinfo;
    let start_ok = connection::StartOk {
        client_properties: Default::default(),
        mechanism: "PLAIN".into(),
        response: format!("\0{}\0{}", user.username, user.password).into(),
        locale: "en_US".into(),
    };
    send(&mut stream, AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok))));
    let AMQPClass::Connection(connection::AMQPMethod::Tune(tune)) = read_method(&mut stream) else { panic!("no tune") };
    let tune_ok = connection::TuneOk { channel_max: tune.channel_max, frame_max: tune.frame_max, heartbeat: 0 };
    send(&mut stream, AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::TuneOk(tune_ok))));
    let open = connection::Open { virtual_host: uri.vhost.as_str().into() };
    send(&mut stream, AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Open(open))));
    read_method(&mut stream);
    send(&mut stream, AMQPFrame::Method(1, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}))));
    read_method(&mut stream);
    let select = confirm::Select { nowait: false };
    send(&mut stream, AMQPFrame::Method(1, AMQPClass::Confirm(confirm::AMQPMethod::Select(select))));
    read_method(&mut stream);
    let publish = basic::Publish {
        exchange: exchange.into(),
        routing_key: routing_key.into(),
        mandatory: false,
        immediate: false,
    };
    let mut frames = encode(&AMQPFrame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Publish(publish))));
    let header = AMQPContentHeader { class_id: 60, body_size: body.len() as u64, properties };
    frames.extend(encode(&AMQPFrame::Header(1, header)));
    let mut replacement = replacement.iter();
    for byte in frames.iter_mut().filter(|byte| **byte == b'~') {
        *byte = *replacement.next().expect("as many replacement bytes as `~`");
    }
    assert!(replacement.next().is_none(), "every replacement byte used");
    stream.write_all(&frames).expect("write the publish and its header");
    send(&mut stream, AMQPFrame::Body(1, body.to_vec()));
    match read_method(&mut stream) {
        AMQPClass::Basic(basic::AMQPMethod::Ack(_)) => {}
        other => panic!("the broker did not confirm the raw publish: {other:?}"),
    }
    let close = connection::Close { reply_code: 200, reply_text: "bye".into(), class_id: 0, method_id: 0 };
    send(&mut stream, AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(close))));
    read_method(&mut stream);
}
