//! Streaming between callers and stores, hashing on the way: uploads go through
//! [`WriteMultipart`] (parts of [`PART_SIZE`], at most [`MAX_INFLIGHT_PARTS`] in flight), reads
//! and hashes go chunk by chunk. Memory per transfer is bounded by those constants, never by
//! the file's size.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};

use super::ArtifactError;

/// Multipart part size: above S3's 5 MiB minimum, small enough that a few in flight stay cheap.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploading concurrently per file before the body stops being read (back-pressure).
pub const MAX_INFLIGHT_PARTS: usize = 2;
/// Read size for local files: large reads keep SHA-256, not syscalls, the bottleneck.
const FILE_CHUNK: usize = 1024 * 1024;

/// What was written: size and SHA-256 hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub size: u64,
    pub sha256: String,
}

/// Streams `body` into `key`, hashing as it goes. Anything over `max_bytes` aborts the upload
/// (nothing is left at `key`), as does a body error.
pub async fn write_object<S, E>(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    mut body: S,
    max_bytes: u64,
) -> Result<Written, ArtifactError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let upload = store.put_multipart(key).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(ArtifactError::Body(e.to_string()));
            }
        };
        size += chunk.len() as u64;
        if size > max_bytes {
            let _ = writer.abort().await;
            return Err(ArtifactError::TooLarge(max_bytes));
        }
        hasher.update(&chunk);
        if let Err(e) = writer.wait_for_capacity(MAX_INFLIGHT_PARTS).await {
            let _ = writer.abort().await;
            return Err(e.into());
        }
        writer.put(chunk);
    }
    writer.finish().await?;
    Ok(Written {
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Size and SHA-256 of the object at `key`, or `None` when it does not exist.
pub async fn hash_object(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
) -> Result<Option<Written>, ArtifactError> {
    let result = match store.get(key).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match result.payload {
        // Local files are read and hashed on one blocking thread in large chunks: no per-chunk
        // task hand-off, so hashing runs at SHA-256 speed.
        GetResultPayload::File(mut file, _) => {
            let hashed = tokio::task::spawn_blocking(move || -> std::io::Result<Written> {
                use std::io::Read;
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; FILE_CHUNK];
                let mut size = 0u64;
                loop {
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    size += n as u64;
                    hasher.update(&buf[..n]);
                }
                Ok(Written {
                    size,
                    sha256: hex::encode(hasher.finalize()),
                })
            })
            .await
            .map_err(|e| ArtifactError::Internal(e.to_string()))??;
            Ok(Some(hashed))
        }
        GetResultPayload::Stream(mut stream) => {
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                size += chunk.len() as u64;
                hasher.update(&chunk);
            }
            Ok(Some(Written {
                size,
                sha256: hex::encode(hasher.finalize()),
            }))
        }
    }
}

/// The object at `key` as a byte stream (`None` when it does not exist).
pub async fn read_object(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
) -> Result<Option<BoxStream<'static, Result<Bytes, std::io::Error>>>, ArtifactError> {
    let result = match store.get(key).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(Some(match result.payload {
        GetResultPayload::File(file, _) => file_stream(file),
        GetResultPayload::Stream(stream) => {
            stream.map(|r| r.map_err(std::io::Error::other)).boxed()
        }
    }))
}

/// Reads a local file on a blocking thread into a small bounded channel, so a slow client
/// holds at most a few chunks in memory.
fn file_stream(mut file: std::fs::File) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        loop {
            let mut buf = vec![0u8; 256 * 1024];
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    async_stream::stream! {
        while let Some(item) = rx.recv().await {
            yield item;
        }
    }
    .boxed()
}
