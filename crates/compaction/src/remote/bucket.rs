//! [`Bucket`]: the S3 bucket of `[remote]`, behind blocking calls. The `object_store` client
//! is async; its tokio runtime (two `remote-io` threads) lives here and nowhere else, so the
//! owners stay plain threads and every other module calls plain functions. Requests are
//! retried with exponential backoff on transient failures (object_store's `RetryConfig`).
//!
//! Keys are relative to the configured prefix: `task_queue/<id>.manifest.json` is
//! `<prefix>/task_queue/<id>.manifest.json` in the bucket.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use tokio::runtime::Runtime;

use super::error::{OpenRemoteError, RemoteError};
use crate::config::RemoteConfig;

/// Size of each part of a multipart upload (S3 wants at least 5 MiB but for the last).
pub(crate) const PART_SIZE: usize = 8 << 20;

/// Where the S3 credentials come from. Never from the config file.
#[derive(Clone, Default)]
pub enum Credentials {
    /// The standard AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`), else the shared credentials file (`~/.aws/credentials`, profile
    /// `AWS_PROFILE` or `default`), else the container's or the instance's role.
    #[default]
    Environment,
    /// Given by the program embedding the library (from its own secret store).
    Static {
        /// The access key id.
        access_key_id: String,
        /// The secret access key.
        secret_access_key: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Environment => f.write_str("Environment"),
            Credentials::Static { access_key_id, .. } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .finish_non_exhaustive(),
        }
    }
}

/// One object as listed.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    /// Its key relative to the prefix.
    pub(crate) key: String,
    /// Its size.
    pub(crate) bytes: u64,
}

/// The bucket and prefix of `[remote]`, with the runtime its client needs.
#[derive(Debug)]
pub(crate) struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// Drives the client's futures; only `block_on` from plain threads reaches it.
    runtime: Runtime,
    bucket: String,
    prefix: String,
    url: String,
}

impl Bucket {
    /// Build the client from `config` and the AWS environment variables. Sends nothing.
    pub(crate) fn open(
        config: &RemoteConfig,
        credentials: &Credentials,
    ) -> Result<Bucket, OpenRemoteError> {
        config
            .check()
            .map_err(|(key, message)| OpenRemoteError::Config { key, message })?;
        let (bucket, prefix) =
            config
                .bucket_and_prefix()
                .map_err(|message| OpenRemoteError::Config {
                    key: "url",
                    message,
                })?;
        // Credentials and region from the environment (AWS_ACCESS_KEY_ID, ...), never the TOML.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .with_allow_http(config.allow_http)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(200),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: 4,
                retry_timeout: config.timeout * 3,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(config.timeout)
                    .with_connect_timeout(Duration::from_secs(10).min(config.timeout))
                    .with_allow_http(config.allow_http),
            );
        if !config.endpoint.is_empty() {
            builder = builder.with_endpoint(&config.endpoint);
        }
        match credentials {
            Credentials::Static {
                access_key_id,
                secret_access_key,
            } => {
                builder = builder
                    .with_access_key_id(access_key_id)
                    .with_secret_access_key(secret_access_key);
            }
            Credentials::Environment => {
                if let Some(keys) = super::profile::from_shared_file() {
                    builder = builder
                        .with_access_key_id(keys.access_key_id)
                        .with_secret_access_key(keys.secret_access_key);
                    if let Some(token) = keys.session_token {
                        builder = builder.with_token(token);
                    }
                }
            }
        }
        if !config.region.is_empty() {
            builder = builder.with_region(&config.region);
        } else if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            builder = builder.with_region("us-east-1");
        }
        let store = builder.build().map_err(OpenRemoteError::Client)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("remote-io")
            .enable_all()
            .build()
            .map_err(OpenRemoteError::Runtime)?;
        Ok(Bucket {
            store: Arc::new(store),
            runtime,
            bucket,
            prefix,
            url: config.url.clone(),
        })
    }

    /// `s3://bucket/prefix`, as configured.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn error(&self, what: String, source: object_store::Error) -> RemoteError {
        RemoteError::of(what, &self.bucket, source)
    }

    /// Every object under `dir/` (relative to the prefix).
    pub(crate) fn list(&self, dir: &str) -> Result<Vec<Listed>, RemoteError> {
        let prefix = self.path(dir);
        let strip = match self.prefix.as_str() {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let found = self.runtime.block_on(async {
            let mut stream = self.store.list(Some(&prefix));
            let mut found = Vec::new();
            while let Some(meta) = stream.next().await {
                let meta = meta?;
                let key = meta.location.to_string();
                found.push(Listed {
                    key: key.strip_prefix(&strip).unwrap_or(&key).to_string(),
                    bytes: meta.size,
                });
            }
            Ok(found)
        });
        found.map_err(|e| self.error(format!("listing {}/{dir}/", self.url), e))
    }

    /// Write a small object in one request.
    pub(crate) fn put(&self, key: &str, bytes: Bytes) -> Result<(), RemoteError> {
        let path = self.path(key);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from_bytes(bytes)))
            .map(|_| ())
            .map_err(|e| self.error(format!("writing {path}"), e))
    }

    /// Read a small object whole.
    pub(crate) fn get(&self, key: &str) -> Result<Bytes, RemoteError> {
        let path = self.path(key);
        self.runtime
            .block_on(async { self.store.get(&path).await?.bytes().await })
            .map_err(|e| self.error(format!("reading {path}"), e))
    }

    /// Delete an object (a missing one is not an error).
    pub(crate) fn delete(&self, key: &str) -> Result<(), RemoteError> {
        let path = self.path(key);
        match self.runtime.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(format!("deleting {path}"), e)),
        }
    }

    /// A reader streaming the object at `key`.
    pub(crate) fn reader(&self, key: &str) -> Result<ObjectReader<'_>, RemoteError> {
        let path = self.path(key);
        let result = self
            .runtime
            .block_on(self.store.get(&path))
            .map_err(|e| self.error(format!("reading {path}"), e))?;
        Ok(ObjectReader {
            bucket: self,
            what: format!("reading {path}"),
            stream: result.into_stream(),
            current: Bytes::new(),
        })
    }

    /// A writer of the object at `key`: one request when it stays under [`PART_SIZE`], a
    /// multipart upload otherwise. Nothing is visible at `key` before
    /// [`ObjectWriter::finish`] returns.
    pub(crate) fn writer(&self, key: &str, max_rate: u64) -> ObjectWriter<'_> {
        ObjectWriter {
            bucket: self,
            path: self.path(key),
            buffer: Vec::with_capacity(PART_SIZE),
            upload: None,
            max_rate,
            started: Instant::now(),
            accepted: 0,
        }
    }
}

/// A transport failure met while streaming an object, carried through `io::Error` so that
/// decoders pass it on unchanged and [`stream_failure`] can tell it from damage.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct StreamFailure(pub(crate) RemoteError);

/// The transport failure inside `e`, if that is what it is.
pub(crate) fn stream_failure(e: io::Error) -> Result<RemoteError, io::Error> {
    if e.get_ref().is_some_and(|inner| inner.is::<StreamFailure>()) {
        let inner = e.into_inner().expect("checked above");
        match inner.downcast::<StreamFailure>() {
            Ok(failure) => Ok(failure.0),
            Err(other) => Err(io::Error::other(other)),
        }
    } else {
        Err(e)
    }
}

/// Streams an object ([`Bucket::reader`]).
pub(crate) struct ObjectReader<'a> {
    bucket: &'a Bucket,
    what: String,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    current: Bytes,
}

impl std::fmt::Debug for ObjectReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.bucket.runtime.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => {
                    let e = self.bucket.error(self.what.clone(), e);
                    return Err(io::Error::other(StreamFailure(e)));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Writes an object in parts ([`Bucket::writer`]), at most `max_rate` bytes per second.
pub(crate) struct ObjectWriter<'a> {
    bucket: &'a Bucket,
    path: ObjectPath,
    buffer: Vec<u8>,
    upload: Option<Box<dyn MultipartUpload>>,
    max_rate: u64,
    started: Instant,
    accepted: u64,
}

impl std::fmt::Debug for ObjectWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWriter")
            .field("path", &self.path)
            .field("accepted", &self.accepted)
            .finish_non_exhaustive()
    }
}

impl ObjectWriter<'_> {
    fn fail(&self, what: &str, e: object_store::Error) -> io::Error {
        let e = self.bucket.error(format!("{what} {}", self.path), e);
        io::Error::other(StreamFailure(e))
    }

    /// Send the buffer as the next part, starting the multipart upload on the first one.
    fn send_part(&mut self) -> io::Result<()> {
        let runtime = &self.bucket.runtime;
        if self.upload.is_none() {
            let upload = runtime
                .block_on(self.bucket.store.put_multipart(&self.path))
                .map_err(|e| self.fail("starting the multipart upload of", e))?;
            self.upload = Some(upload);
        }
        let part = PutPayload::from(std::mem::take(&mut self.buffer));
        self.buffer.reserve(PART_SIZE);
        let upload = self.upload.as_mut().expect("started above");
        let sent = runtime.block_on(upload.put_part(part));
        sent.map_err(|e| self.fail("uploading a part of", e))
    }

    /// Sleep as long as the bytes accepted so far are ahead of `max_rate`.
    fn throttle(&self) {
        if self.max_rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.accepted as f64 / self.max_rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }

    /// Send what is left and make the object visible. On failure a multipart upload is
    /// aborted when the writer drops (its parts were never visible).
    pub(crate) fn finish(mut self) -> io::Result<()> {
        if self.upload.is_none() {
            let payload = PutPayload::from(std::mem::take(&mut self.buffer));
            return self
                .bucket
                .runtime
                .block_on(self.bucket.store.put(&self.path, payload))
                .map(|_| ())
                .map_err(|e| self.fail("writing", e));
        }
        if !self.buffer.is_empty() {
            self.send_part()?;
        }
        let upload = self.upload.as_mut().expect("checked above");
        let done = self.bucket.runtime.block_on(upload.complete());
        if done.is_ok() {
            self.upload = None;
        }
        done.map(|_| ())
            .map_err(|e| self.fail("completing the multipart upload of", e))
    }
}

impl Drop for ObjectWriter<'_> {
    /// A writer dropped before [`ObjectWriter::finish`] succeeded aborts its multipart
    /// upload, best effort: the parts were never visible, this only frees them sooner.
    fn drop(&mut self) {
        if let Some(mut upload) = self.upload.take() {
            let _ = self.bucket.runtime.block_on(upload.abort());
        }
    }
}

impl Write for ObjectWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(PART_SIZE - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        self.accepted += n as u64;
        if self.buffer.len() == PART_SIZE {
            self.send_part()?;
        }
        self.throttle();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
