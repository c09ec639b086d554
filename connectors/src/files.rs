//! Finding a source's extract files: a local path or glob, or an object store URI glob,
//! each file with a fingerprint of its content (SHA-256 for local files, the ETag for
//! object stores) that the exactly-once ledger uses.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{GetOptions, ObjectMeta, ObjectStore};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;
use url::Url;

use crate::error::{Error, Result};
use lakescore_engine::storage::hashing::hex;

/// Why a file whose content is not the one it was listed with is rejected.
pub const CHANGED_WHILE_READ: &str = "the file changed while it was read (its content is not the one it was listed with): it is still being written. Nothing of it landed; it lands on the next run once it no longer changes";

/// One extract file.
#[derive(Clone)]
pub struct ExtractFile {
    /// The file as users see it: a local path or a full URI.
    pub display: String,
    /// Size in bytes.
    pub size: u64,
    /// `sha256:<hex>` of the content, or `etag:<etag>` on object stores.
    pub fingerprint: String,
    location: Location,
}

impl fmt::Debug for ExtractFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtractFile")
            .field("display", &self.display)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

#[derive(Clone)]
enum Location {
    Local(PathBuf),
    Remote {
        store: Arc<dyn ObjectStore>,
        path: StorePath,
    },
}

/// A local file to read: the extract itself, or a temporary copy of a remote one.
pub struct LocalCopy {
    path: PathBuf,
    _temporary: Option<NamedTempFile>,
}

impl LocalCopy {
    /// Where to read it.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ExtractFile {
    /// A local file to read; remote files are streamed into a temporary file first.
    pub async fn local_copy(&self) -> Result<LocalCopy> {
        match &self.location {
            Location::Local(path) => Ok(LocalCopy {
                path: path.clone(),
                _temporary: None,
            }),
            Location::Remote { store, path } => {
                let temporary =
                    NamedTempFile::new().map_err(|e| Error::storage(&self.display, e))?;
                let mut output = tokio::fs::File::from_std(
                    temporary
                        .reopen()
                        .map_err(|e| Error::storage(&self.display, e))?,
                );
                // Read exactly the version that was listed: an object replaced since is
                // refused rather than landed under the old version's ledger entry.
                let options = GetOptions {
                    if_match: self
                        .fingerprint
                        .strip_prefix("etag:")
                        .map(|tag| format!("\"{tag}\"")),
                    ..GetOptions::default()
                };
                let changed = || Error::File {
                    file: self.display.clone(),
                    message: String::from(CHANGED_WHILE_READ),
                };
                let found = match store.get_opts(path, options).await {
                    Ok(found) => found,
                    Err(object_store::Error::Precondition { .. }) => return Err(changed()),
                    Err(error) => return Err(Error::storage(&self.display, error)),
                };
                // Stores that ignore If-Match still say which version they sent.
                if !is_listed_version(&self.fingerprint, &found.meta) {
                    return Err(changed());
                }
                let mut stream = found.into_stream();
                while let Some(chunk) = stream
                    .try_next()
                    .await
                    .map_err(|e| Error::storage(&self.display, e))?
                {
                    tokio::io::AsyncWriteExt::write_all(&mut output, &chunk)
                        .await
                        .map_err(|e| Error::storage(&self.display, e))?;
                }
                tokio::io::AsyncWriteExt::flush(&mut output)
                    .await
                    .map_err(|e| Error::storage(&self.display, e))?;
                Ok(LocalCopy {
                    path: temporary.path().to_path_buf(),
                    _temporary: Some(temporary),
                })
            }
        }
    }
}

/// Lists the files `pattern` matches, sorted by name. Relative local patterns are
/// relative to `base_dir`; object store URIs use `storage_options` (plus the usual
/// `AWS_*`, `GOOGLE_*`, `AZURE_*` environment variables).
pub async fn list_files(
    pattern: &str,
    base_dir: &Path,
    storage_options: &HashMap<String, String>,
) -> Result<Vec<ExtractFile>> {
    if pattern.contains("://") && !pattern.starts_with("file://") {
        return list_remote(pattern, storage_options).await;
    }
    let pattern = pattern.strip_prefix("file://").unwrap_or(pattern);
    let absolute = base_dir.join(pattern);
    let pattern_text = absolute.to_string_lossy().into_owned();
    tokio::task::spawn_blocking(move || list_local(&pattern_text))
        .await
        .map_err(|e| Error::storage("local files", e))?
}

fn list_local(pattern: &str) -> Result<Vec<ExtractFile>> {
    let paths = glob::glob(pattern).map_err(|e| Error::File {
        file: pattern.to_string(),
        message: format!("not a valid glob pattern: {e}"),
    })?;
    let mut files = Vec::new();
    for path in paths {
        let path = path.map_err(|e| Error::storage(pattern, e))?;
        if !path.is_file() {
            continue;
        }
        let display = path.to_string_lossy().into_owned();
        let (size, digest) = sha256_file(&path).map_err(|e| Error::storage(&display, e))?;
        files.push(ExtractFile {
            display,
            size,
            fingerprint: format!("sha256:{digest}"),
            location: Location::Local(path),
        });
    }
    files.sort_by(|a, b| a.display.cmp(&b.display));
    Ok(files)
}

/// The size and SHA-256 (hex) of the file at `path`.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        size += read as u64;
        hasher.update(&buffer[..read]);
    }
    Ok((size, hex(&hasher.finalize())))
}

async fn list_remote(
    pattern: &str,
    storage_options: &HashMap<String, String>,
) -> Result<Vec<ExtractFile>> {
    let url = Url::parse(pattern).map_err(|e| Error::File {
        file: pattern.to_string(),
        message: format!("not a valid URI: {e}"),
    })?;
    let mut options: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
        })
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    options.extend(storage_options.iter().map(|(k, v)| (k.clone(), v.clone())));
    let (store, key_pattern) =
        object_store::parse_url_opts(&url, options).map_err(|e| Error::storage(pattern, e))?;
    let store: Arc<dyn ObjectStore> = Arc::from(store);
    let key_pattern = percent_decode(key_pattern.as_ref());
    let matcher = glob::Pattern::new(&key_pattern).map_err(|e| Error::File {
        file: pattern.to_string(),
        message: format!("not a valid glob pattern: {e}"),
    })?;
    let literal_prefix: String = key_pattern
        .chars()
        .take_while(|c| !matches!(c, '*' | '?' | '['))
        .collect();
    let prefix = literal_prefix
        .rsplit_once('/')
        .map(|(dir, _)| StorePath::from(dir));
    let objects: Vec<_> = store
        .list(prefix.as_ref())
        .try_collect()
        .await
        .map_err(|e| Error::storage(pattern, e))?;
    let root = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    let mut files: Vec<ExtractFile> = objects
        .into_iter()
        .filter(|meta| matcher.matches(meta.location.as_ref()))
        .map(|meta| ExtractFile {
            display: format!("{root}/{}", meta.location),
            size: meta.size,
            fingerprint: remote_fingerprint(&meta),
            location: Location::Remote {
                store: store.clone(),
                path: meta.location,
            },
        })
        .collect();
    files.sort_by(|a, b| a.display.cmp(&b.display));
    Ok(files)
}

/// An object's fingerprint: its ETag, or its size and modification time on stores
/// without ETags.
fn remote_fingerprint(meta: &ObjectMeta) -> String {
    match &meta.e_tag {
        Some(tag) => format!("etag:{}", tag.trim_matches('"')),
        None => format!(
            "size-mtime:{}-{}",
            meta.size,
            meta.last_modified.timestamp_millis()
        ),
    }
}

/// True when `sent` (what a read returned) is the object version fingerprinted `listed`,
/// as far as the two can be compared.
fn is_listed_version(listed: &str, sent: &ObjectMeta) -> bool {
    match (listed.strip_prefix("etag:"), &sent.e_tag) {
        (Some(tag), Some(sent_tag)) => tag == sent_tag.trim_matches('"'),
        (Some(_), None) => true,
        // Reads report the time in whole seconds, listings in milliseconds.
        (None, _) => {
            let parsed = listed
                .strip_prefix("size-mtime:")
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(size, millis)| {
                    Some((size.parse::<u64>().ok()?, millis.parse::<i64>().ok()?))
                });
            parsed.is_none_or(|(size, millis)| {
                size == sent.size && millis.div_euclid(1000) == sent.last_modified.timestamp()
            })
        }
    }
}

/// Object store paths come back percent-encoded from URL parsing; globs match decoded keys.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_globs_list_sorted_files_with_content_fingerprints() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("crm")).unwrap();
        std::fs::write(dir.path().join("crm/accounts_2.csv"), "b").unwrap();
        std::fs::write(dir.path().join("crm/accounts_1.csv"), "a").unwrap();
        std::fs::write(dir.path().join("crm/other.csv"), "c").unwrap();
        let files = list_files("crm/accounts_*.csv", dir.path(), &HashMap::new())
            .await
            .unwrap();
        let names: Vec<&str> = files
            .iter()
            .map(|f| f.display.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["accounts_1.csv", "accounts_2.csv"]);
        assert_eq!(
            files[0].fingerprint,
            "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
        );
        assert_eq!(files[0].size, 1);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("exports/a%20b*.csv"), "exports/a b*.csv");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
