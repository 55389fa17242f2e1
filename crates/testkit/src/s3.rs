//! S3 helpers for tests: a client for the native stack's S3 API (moto) or LocalStack.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

/// A path-style client for `endpoint` with the dummy credentials local S3 servers accept.
pub fn client(endpoint: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "testkit"))
        .force_path_style(true)
        .build();
    Client::from_conf(config)
}

/// Creates `bucket` (a fresh name per test).
pub async fn create_bucket(client: &Client, bucket: &str) -> Result<(), String> {
    client
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            format!(
                "create bucket {bucket}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        })
}
