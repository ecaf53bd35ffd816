#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;

#[test]
fn every_api_error_maps_to_its_status() {
    let table: Vec<(ApiError, u16)> = vec![
        (ApiError::Request(RequestError::Json("x".into())), 400),
        (
            ApiError::Request(RequestError::Uid {
                field: "principal",
                message: "x".into(),
            }),
            400,
        ),
        (ApiError::Request(RequestError::Context("x".into())), 422),
        (ApiError::Request(RequestError::Entities("x".into())), 422),
        (
            ApiError::Request(RequestError::EntityConflict("x".into())),
            422,
        ),
        (ApiError::Request(RequestError::Schema("x".into())), 422),
        (
            ApiError::BatchItem {
                index: 1,
                error: RequestError::Schema("x".into()),
            },
            422,
        ),
        (
            ApiError::BatchItem {
                index: 1,
                error: RequestError::Json("x".into()),
            },
            400,
        ),
        (ApiError::TooLarge { limit: 10 }, 413),
        (ApiError::Body("x".into()), 400),
        (ApiError::TooDeep { limit: 64 }, 400),
        (ApiError::BodyTimeout { ms: 10 }, 408),
        (
            ApiError::NotFound {
                method: "GET".into(),
                path: "/x".into(),
            },
            404,
        ),
        (
            ApiError::MethodNotAllowed {
                method: "GET".into(),
                path: "/v1/is_authorized".into(),
                allowed: "POST",
            },
            405,
        ),
        (ApiError::NotReady("x".into()), 503),
        (ApiError::ClientCertRequired, 403),
    ];
    for (error, status) in table {
        assert_eq!(error.status().as_u16(), status, "{error}");
        let response = error.into_response();
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    }
}

#[test]
fn batch_item_errors_name_the_item() {
    let e = ApiError::BatchItem {
        index: 3,
        error: RequestError::Context("bad".into()),
    };
    assert_eq!(e.to_string(), "`requests[3]`: `context`: bad");
}
