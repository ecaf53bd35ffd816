#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use prost::Message;

use super::proto::{
    Address, AttributeContext, AttributeRequest, HttpRequest, HttpResponse, OkHttpResponse, Peer,
    SocketAddress,
};
use super::*;

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    socket_address: Some(SocketAddress {
                        address: "192.0.2.7".into(),
                        port_value: 4711,
                    }),
                }),
            }),
            request: Some(AttributeRequest {
                http: Some(HttpRequest {
                    method: method.into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    path: path.into(),
                    header_map: None,
                }),
            }),
        }),
    }
}

/// The wire bytes pin the field numbers: a wrong tag would decode as an unknown
/// field on Envoy's side, silently.
#[test]
fn field_numbers_match_envoys_protos() {
    let bytes = request("", "/a", &[]).encode_to_vec();
    let http = [0x22, 0x02, b'/', b'a']; // HttpRequest.path = 4
    let mut expected = vec![0x0a]; // CheckRequest.attributes = 1
    let source = [
        0x0a, 0x12, // AttributeContext.source = 1
        0x0a, 0x10, // Peer.address = 1
        0x0a, 0x0e, // Address.socket_address = 1
        0x12, 0x09, // SocketAddress.address = 2
    ];
    let mut context = source.to_vec();
    context.extend(b"192.0.2.7");
    context.extend([0x18, 0xe7, 0x24]); // SocketAddress.port_value = 3 (4711)
    context.extend([0x22, 0x06, 0x12, 0x04]); // AttributeContext.request = 4, Request.http = 2
    context.extend(http);
    expected.push(u8::try_from(context.len()).unwrap());
    expected.extend(context);
    assert_eq!(bytes, expected);

    let denied = denied(7, StatusCode::FORBIDDEN, &HeaderMap::new(), String::new());
    let bytes = denied.encode_to_vec();
    // status = 1 {code = 1: 7, message = 2: "Forbidden"}, denied_response = 2
    // {status = 1 {code = 1: 403}}
    let mut expected = vec![0x0a, 0x0d, 0x08, 0x07, 0x12, 0x09];
    expected.extend(b"Forbidden");
    expected.extend([0x12, 0x05, 0x0a, 0x03, 0x08]);
    expected.extend(prost_varint::encode_varint_to_vec(403));
    assert_eq!(bytes, expected);

    let ok = CheckResponse {
        status: None,
        http_response: Some(HttpResponse::Ok(OkHttpResponse {
            headers: vec![header("k", "v")],
            headers_to_remove: vec!["r".into()],
        })),
    };
    // ok_response = 3 {headers = 2 {header = 1 {key = 1, value = 2}, append_action = 3: 2},
    // headers_to_remove = 5}
    assert_eq!(
        ok.encode_to_vec(),
        [
            0x1a, 0x0f, 0x12, 0x0a, 0x0a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', 0x18, 0x02,
            0x2a, 0x01, b'r'
        ]
    );
}

mod prost_varint {
    pub fn encode_varint_to_vec(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_varint(value, &mut out);
        out
    }
}

#[test]
fn a_check_request_becomes_the_original_request() {
    let (original, headers, peer) = from_request(request(
        "delete",
        "/api/x%2Fy?view=full&a=1",
        &[
            (":path", "/elsewhere"),
            ("authorization", "Bearer t"),
            ("x-auth-principal", "alice"),
        ],
    ))
    .unwrap();
    assert_eq!(original.method, "DELETE");
    assert_eq!(original.path, "/api/x%2Fy");
    assert_eq!(original.query, "view=full&a=1");
    assert_eq!(headers["x-auth-principal"], "alice");
    assert!(!headers.contains_key(":path"));
    assert_eq!(peer, Some("192.0.2.7:4711".parse().unwrap()));
}

#[test]
fn raw_headers_are_read_too() {
    let mut req = request("GET", "/a", &[]);
    let http = req
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap();
    http.header_map = Some(proto::HeaderMap {
        headers: vec![proto::HeaderValue {
            key: "x-auth-principal".into(),
            value: String::new(),
            raw_value: b"bob".to_vec(),
        }],
    });
    let (_, headers, _) = from_request(req).unwrap();
    assert_eq!(headers["x-auth-principal"], "bob");
}

#[test]
fn malformed_checks_are_refused() {
    assert!(from_request(CheckRequest::default()).is_err());
    assert!(from_request(request("GET", "*", &[])).is_err());
    assert!(from_request(request("", "/a", &[])).is_err());
    assert!(from_request(request("G T", "/a", &[])).is_err());
}

#[tokio::test]
async fn answers_translate_to_grpc() {
    let mut allow = Response::new(Full::new(Bytes::from_static(b"{}")));
    allow.headers_mut().insert(
        PRINCIPAL_HEADER,
        HeaderValue::from_static("User::\"alice\""),
    );
    let out = to_check_response(allow).await;
    assert_eq!(out.status.unwrap().code, code::OK);
    let Some(HttpResponse::Ok(ok)) = out.http_response else {
        panic!("not ok")
    };
    assert_eq!(ok.headers.len(), 1);
    assert_eq!(ok.headers[0].header.as_ref().unwrap().key, PRINCIPAL_HEADER);
    // The decision's other headers are removed, whatever a client sent.
    assert!(ok.headers_to_remove.contains(&GRANTS_HEADER.to_owned()));
    assert!(
        ok.headers_to_remove
            .contains(&VALID_UNTIL_HEADER.to_owned())
    );

    for (status, grpc) in [
        (401, code::UNAUTHENTICATED),
        (403, code::PERMISSION_DENIED),
        (400, code::INVALID_ARGUMENT),
        (422, code::INTERNAL),
    ] {
        let mut response = Response::new(Full::new(Bytes::from_static(b"{\"error\":1}")));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        let out = to_check_response(response).await;
        assert_eq!(out.status.unwrap().code, grpc, "{status}");
        let Some(HttpResponse::Denied(denied)) = out.http_response else {
            panic!("not denied")
        };
        let http = denied.status.unwrap().code;
        assert_eq!(
            http,
            if status == 422 {
                403
            } else {
                i32::from(status)
            }
        );
        assert_eq!(denied.body, "{\"error\":1}");
    }
}
