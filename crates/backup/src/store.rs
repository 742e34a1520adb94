//! A cluster's backup store: a directory or an S3-compatible bucket, behind `object_store`.
//!
//! Every object is written whole and never changed; readers see either all of it or nothing.
//! Keys are relative to the store's root (`<dir>` or `s3://bucket/prefix`).

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a store lives, parsed from what the user typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A local directory (absolute).
    Dir(PathBuf),
    /// An S3-compatible bucket and a key prefix (possibly empty).
    S3 { bucket: String, prefix: String },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreUrlError {
    #[error("backup store {0:?} is neither a directory path nor s3://bucket[/prefix]; give an absolute path, file:///path or s3://bucket/prefix")]
    Unsupported(String),
    #[error("backup store {0:?} names no bucket; write s3://bucket[/prefix]")]
    NoBucket(String),
    #[error("backup store directory {0:?} is not absolute; give an absolute path")]
    Relative(String),
}

impl StoreUrl {
    pub fn parse(text: &str) -> Result<Self, StoreUrlError> {
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreUrlError::NoBucket(text.into()));
            }
            return Ok(Self::S3 {
                bucket: bucket.into(),
                prefix: prefix.trim_matches('/').into(),
            });
        }
        let path = text.strip_prefix("file://").unwrap_or(text);
        if path.contains("://") {
            return Err(StoreUrlError::Unsupported(text.into()));
        }
        if !Path::new(path).is_absolute() {
            return Err(StoreUrlError::Relative(text.into()));
        }
        Ok(Self::Dir(PathBuf::from(path)))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir(path) => write!(f, "{}", path.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl serde::Serialize for StoreUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StoreUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An object's key, its size, and the SHA-256 of its bytes as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Written {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

/// An object that exists in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
}

#[derive(Clone)]
pub struct Store {
    url: StoreUrl,
    inner: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Store({})", self.url)
    }
}

/// Multipart uploads go in parts of this size; S3 wants at least 5 MiB per part.
const PART_SIZE: usize = 8 << 20;

impl Store {
    /// Opens the store. A directory is created if missing. An S3 bucket takes its endpoint,
    /// region and credentials from the environment (`AWS_ENDPOINT_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, ...), as the AWS tools do.
    pub fn open(url: &StoreUrl) -> anyhow::Result<Self> {
        let (inner, prefix): (Arc<dyn ObjectStore>, ObjectPath) = match url {
            StoreUrl::Dir(path) => {
                std::fs::create_dir_all(path).map_err(|e| {
                    anyhow::anyhow!("cannot create the backup store {}: {e}", path.display())
                })?;
                // fsync every object and its directory: a backup that an OS crash can take
                // back is no backup.
                let fs = object_store::local::LocalFileSystem::new_with_prefix(path)?
                    .with_automatic_cleanup(true)
                    .with_fsync(true);
                (Arc::new(fs), ObjectPath::default())
            }
            StoreUrl::S3 { bucket, prefix } => {
                let mut builder =
                    object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                // `from_env` reads AWS_ENDPOINT; the AWS tools' newer name is AWS_ENDPOINT_URL.
                // object_store panics later on an endpoint that is not a URL: refuse it here.
                for name in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"] {
                    if let Ok(endpoint) = std::env::var(name) {
                        check_endpoint(name, &endpoint)?;
                    }
                }
                if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
                    builder = builder.with_endpoint(&endpoint);
                    if endpoint.starts_with("http://") {
                        builder = builder.with_allow_http(true);
                    }
                }
                if std::env::var("AWS_REGION").is_err()
                    && std::env::var("AWS_DEFAULT_REGION").is_err()
                {
                    builder = builder.with_region("us-east-1");
                }
                let s3 = builder.build().map_err(|e| {
                    anyhow::anyhow!("cannot use the backup store {url}: {e}; set AWS_ENDPOINT_URL, AWS_REGION and the AWS credentials")
                })?;
                (Arc::new(s3), ObjectPath::from(prefix.as_str()))
            }
        };
        Ok(Self {
            url: url.clone(),
            inner,
            prefix,
        })
    }

    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    fn path(&self, key: &str) -> ObjectPath {
        key.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |path, part| path.join(part))
    }

    fn key_of(&self, path: &ObjectPath) -> String {
        path.prefix_match(&self.prefix)
            .map(|parts| parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>())
            .unwrap_or_default()
            .join("/")
    }

    /// Checks that the store answers and lets us write, read and delete: a probe object.
    pub async fn check_access(&self) -> anyhow::Result<()> {
        let key = format!(".myset-probe-{:016x}", rand_u64());
        let what = |e: object_store::Error| {
            anyhow::anyhow!(
                "backup store {} is not usable: {}; check its address and credentials",
                self.url,
                one_line(&e)
            )
        };
        self.inner
            .put(&self.path(&key), PutPayload::from_static(b"probe"))
            .await
            .map_err(what)?;
        self.inner.get(&self.path(&key)).await.map_err(what)?;
        self.inner.delete(&self.path(&key)).await.map_err(what)?;
        Ok(())
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> anyhow::Result<Written> {
        let written = Written {
            key: key.into(),
            size: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        };
        self.inner
            .put(&self.path(key), PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| self.failed("write", key, e))?;
        Ok(written)
    }

    /// Uploads a stream of unknown length as one object, hashing it on the way.
    pub async fn put_stream<S, E>(&self, key: &str, mut stream: S) -> anyhow::Result<Written>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<anyhow::Error>,
    {
        let upload = self
            .inner
            .put_multipart(&self.path(key))
            .await
            .map_err(|e| self.failed("write", key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let result: anyhow::Result<()> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(Into::into)?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                writer.wait_for_capacity(4).await?;
                writer.put(chunk);
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer
            .finish()
            .await
            .map_err(|e| self.failed("write", key, e))?;
        Ok(Written {
            key: key.into(),
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Bytes> {
        let result = self
            .inner
            .get(&self.path(key))
            .await
            .map_err(|e| self.failed("read", key, e))?;
        result
            .bytes()
            .await
            .map_err(|e| self.failed("read", key, e))
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> anyhow::Result<bool> {
        match self.inner.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.failed("read", key, e)),
        }
    }

    /// The object's bytes as a stream, for large objects.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> anyhow::Result<impl Stream<Item = anyhow::Result<Bytes>> + Send + 'static> {
        let result = self
            .inner
            .get(&self.path(key))
            .await
            .map_err(|e| self.failed("read", key, e))?;
        let url = self.url.to_string();
        let key = key.to_string();
        Ok(result.into_stream().map_err(move |e| {
            anyhow::anyhow!(
                "reading {key} from backup store {url} failed: {}",
                one_line(&e)
            )
        }))
    }

    /// Every object under `prefix` (a key prefix ending at a `/`), in key order.
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<Listed>> {
        let path = self.path(prefix);
        let mut listed: Vec<Listed> = self
            .inner
            .list(Some(&path))
            .map_ok(|meta| Listed {
                key: self.key_of(&meta.location),
                size: meta.size,
            })
            .try_collect()
            .await
            .map_err(|e| self.failed("list", prefix, e))?;
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed("delete", key, e)),
        }
    }

    fn failed(&self, action: &str, key: &str, e: object_store::Error) -> anyhow::Error {
        anyhow::anyhow!(
            "cannot {action} {key} in backup store {}: {}{}",
            self.url,
            one_line(&e),
            self.hint(&e)
        )
    }

    /// What to check when an S3 store is not reached or refuses the request.
    fn hint(&self, e: &object_store::Error) -> &'static str {
        if !matches!(self.url, StoreUrl::S3 { .. }) {
            return "";
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(s) = source {
            if s.downcast_ref::<object_store::client::HttpError>()
                .is_some_and(|h| h.kind() == object_store::client::HttpErrorKind::Connect)
            {
                return "; check that AWS_ENDPOINT_URL (or AWS_REGION) names a reachable S3 endpoint";
            }
            source = s.source();
        }
        let text = one_line(e);
        if text.contains(" 403 Forbidden") || text.contains(" 401 Unauthorized") {
            return "; the store refused the request: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and that they may use this bucket";
        }
        ""
    }
}

/// An S3 endpoint must be an http(s) URL with a host.
fn check_endpoint(variable: &str, endpoint: &str) -> anyhow::Result<()> {
    let parsed = url::Url::parse(endpoint).ok();
    let usable = parsed
        .as_ref()
        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
    if !usable {
        anyhow::bail!(
            "{variable}={endpoint:?} is not an S3 endpoint URL; write it as http(s)://host[:port]"
        );
    }
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// object_store's errors span lines (the source chain); a message here is one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    // An S3 error's XML body: its code and message say it all.
    if let Some(at) = text.find("<?xml") {
        let field = |tag: &str| {
            let start = text[at..].find(&format!("<{tag}>"))? + at + tag.len() + 2;
            let end = text[start..].find(&format!("</{tag}>"))? + start;
            Some(text[start..end].to_string())
        };
        let said: Vec<String> = [field("Code"), field("Message")]
            .into_iter()
            .flatten()
            .collect();
        text.truncate(at);
        text.push_str(&said.join(": "));
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn rand_u64() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (std::process::id() as u64) << 32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_strictly() {
        assert_eq!(
            StoreUrl::parse("/var/backups/x").unwrap(),
            StoreUrl::Dir("/var/backups/x".into())
        );
        assert_eq!(
            StoreUrl::parse("file:///var/b").unwrap(),
            StoreUrl::Dir("/var/b".into())
        );
        assert_eq!(
            StoreUrl::parse("s3://bkt/a/b/").unwrap(),
            StoreUrl::S3 {
                bucket: "bkt".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(StoreUrl::parse("s3://bkt").unwrap().to_string(), "s3://bkt");
        for bad in ["relative/dir", "gs://bucket", "s3://", "s3:///x"] {
            assert!(StoreUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_must_be_urls() {
        assert!(check_endpoint("E", "http://127.0.0.1:9000").is_ok());
        assert!(check_endpoint("E", "https://s3.example").is_ok());
        for bad in ["", "localhost:9000", "ftp://x", "http://"] {
            let err = check_endpoint("E", bad).unwrap_err().to_string();
            assert!(err.contains("http(s)://"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn a_directory_store_round_trips_objects_with_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreUrl::Dir(dir.path().join("s"))).unwrap();
        store.check_access().await.unwrap();
        let small = store
            .put("a/one", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(small.sha256, sha256_hex(b"hello"));
        let big: Vec<u8> = (0..(PART_SIZE * 2 + 17)).map(|i| i as u8).collect();
        let chunks: Vec<Result<Bytes, std::io::Error>> = big
            .chunks(100_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let written = store
            .put_stream("a/two", futures::stream::iter(chunks))
            .await
            .unwrap();
        assert_eq!(written.size, big.len() as u64);
        assert_eq!(written.sha256, sha256_hex(&big));
        assert_eq!(store.get("a/two").await.unwrap(), Bytes::from(big));
        let keys: Vec<String> = store
            .list("a/")
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.key)
            .collect();
        assert_eq!(keys, ["a/one", "a/two"]);
        assert!(store.exists("a/one").await.unwrap());
        store.delete("a/one").await.unwrap();
        assert!(!store.exists("a/one").await.unwrap());
        assert!(store.get("a/one").await.is_err());
    }

    #[tokio::test]
    async fn a_broken_upload_leaves_no_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreUrl::Dir(dir.path().to_path_buf())).unwrap();
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"partial")),
            Err(std::io::Error::other("the source broke off")),
        ];
        let err = store
            .put_stream("x", futures::stream::iter(chunks))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("broke off"), "{err}");
        assert!(!store.exists("x").await.unwrap());
    }
}
