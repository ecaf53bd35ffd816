//! The few Envoy ext_authz v3 messages elevate reads and writes, declared by hand
//! with `prost` derives instead of generated from Envoy's protos: no `protoc` at
//! build time, and the wire format only needs the field numbers to match. Fields
//! elevate does not use are left out; protobuf skips unknown fields on decode.
//!
//! Every number below is Envoy's (api/ in github.com/envoyproxy/envoy):
//! * `envoy/service/auth/v3/external_auth.proto`: `CheckRequest`, `CheckResponse`,
//!   `OkHttpResponse`, `DeniedHttpResponse`;
//! * `envoy/service/auth/v3/attribute_context.proto`: `AttributeContext` and its
//!   `Peer`, `Request`, `HttpRequest`;
//! * `envoy/config/core/v3/address.proto`: `Address`, `SocketAddress`;
//! * `envoy/config/core/v3/base.proto`: `HeaderValue`, `HeaderValueOption`,
//!   `HeaderMap`;
//! * `envoy/type/v3/http_status.proto`: `HttpStatus`;
//! * `google/rpc/status.proto`: `Status`.

use std::collections::HashMap;

/// `envoy.service.auth.v3.CheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    /// `AttributeContext attributes = 1;`
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<AttributeContext>,
}

/// `envoy.service.auth.v3.AttributeContext`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeContext {
    /// `Peer source = 1;`: the downstream client of the last hop.
    #[prost(message, optional, tag = "1")]
    pub source: Option<Peer>,
    /// `Request request = 4;`
    #[prost(message, optional, tag = "4")]
    pub request: Option<AttributeRequest>,
}

/// `AttributeContext.Peer`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Peer {
    /// `config.core.v3.Address address = 1;`
    #[prost(message, optional, tag = "1")]
    pub address: Option<Address>,
}

/// `AttributeContext.Request`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeRequest {
    /// `HttpRequest http = 2;`
    #[prost(message, optional, tag = "2")]
    pub http: Option<HttpRequest>,
}

/// `AttributeContext.HttpRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRequest {
    /// `string method = 2;`
    #[prost(string, tag = "2")]
    pub method: String,
    /// `map<string, string> headers = 3;`: lower-case names, repeated headers
    /// joined with commas.
    #[prost(map = "string, string", tag = "3")]
    pub headers: HashMap<String, String>,
    /// `string path = 4;`: the request target, path and query, undecoded.
    #[prost(string, tag = "4")]
    pub path: String,
    /// `config.core.v3.HeaderMap header_map = 13;`: instead of `headers` when
    /// Envoy's `encode_raw_headers` is set.
    #[prost(message, optional, tag = "13")]
    pub header_map: Option<HeaderMap>,
}

/// `envoy.config.core.v3.Address` (only its `socket_address` alternative).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    /// `SocketAddress socket_address = 1;` (in `oneof address`).
    #[prost(message, optional, tag = "1")]
    pub socket_address: Option<SocketAddress>,
}

/// `envoy.config.core.v3.SocketAddress`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SocketAddress {
    /// `string address = 2;`
    #[prost(string, tag = "2")]
    pub address: String,
    /// `uint32 port_value = 3;` (in `oneof port_specifier`).
    #[prost(uint32, tag = "3")]
    pub port_value: u32,
}

/// `envoy.config.core.v3.HeaderMap`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderMap {
    /// `repeated HeaderValue headers = 1;`
    #[prost(message, repeated, tag = "1")]
    pub headers: Vec<HeaderValue>,
}

/// `envoy.config.core.v3.HeaderValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    /// `string key = 1;`
    #[prost(string, tag = "1")]
    pub key: String,
    /// `string value = 2;`
    #[prost(string, tag = "2")]
    pub value: String,
    /// `bytes raw_value = 3;`: what `header_map` carries instead of `value`.
    #[prost(bytes = "vec", tag = "3")]
    pub raw_value: Vec<u8>,
}

/// `HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD`: a client's
/// own copy of an `x-elevate-*` header must not survive next to ours.
pub const OVERWRITE_IF_EXISTS_OR_ADD: i32 = 2;

/// `envoy.config.core.v3.HeaderValueOption`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValueOption {
    /// `HeaderValue header = 1;`
    #[prost(message, optional, tag = "1")]
    pub header: Option<HeaderValue>,
    /// `HeaderAppendAction append_action = 3;` (the deprecated `BoolValue append = 2`
    /// is left unset, as Envoy requires when this one is used).
    #[prost(int32, tag = "3")]
    pub append_action: i32,
}

/// `envoy.service.auth.v3.CheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckResponse {
    /// `google.rpc.Status status = 1;`: `OK` allows, anything else denies.
    #[prost(message, optional, tag = "1")]
    pub status: Option<RpcStatus>,
    /// `oneof http_response { DeniedHttpResponse denied_response = 2;
    /// OkHttpResponse ok_response = 3; }`
    #[prost(oneof = "HttpResponse", tags = "2, 3")]
    pub http_response: Option<HttpResponse>,
}

/// `CheckResponse.http_response`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HttpResponse {
    #[prost(message, tag = "2")]
    Denied(DeniedHttpResponse),
    #[prost(message, tag = "3")]
    Ok(OkHttpResponse),
}

/// `envoy.service.auth.v3.DeniedHttpResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeniedHttpResponse {
    /// `type.v3.HttpStatus status = 1;` (required by Envoy's validation).
    #[prost(message, optional, tag = "1")]
    pub status: Option<HttpStatus>,
    /// `repeated config.core.v3.HeaderValueOption headers = 2;`: to the client.
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// `string body = 3;`
    #[prost(string, tag = "3")]
    pub body: String,
}

/// `envoy.service.auth.v3.OkHttpResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OkHttpResponse {
    /// `repeated config.core.v3.HeaderValueOption headers = 2;`: onto the request
    /// that goes upstream.
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// `repeated string headers_to_remove = 5;`
    #[prost(string, repeated, tag = "5")]
    pub headers_to_remove: Vec<String>,
}

/// `envoy.type.v3.HttpStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpStatus {
    /// `StatusCode code = 1;`: an enum whose values are the HTTP status codes;
    /// Envoy rejects values it does not define.
    #[prost(int32, tag = "1")]
    pub code: i32,
}

/// `google.rpc.Status` (without `details`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// `int32 code = 1;`: a `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// `string message = 2;`
    #[prost(string, tag = "2")]
    pub message: String,
}
