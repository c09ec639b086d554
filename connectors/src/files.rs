//! Finding a source's extract files: a local path or glob, or an object store URI glob,
//! each file with a fingerprint of its content (SHA-256 for local files, the ETag for
//! object stores) that the exactly-once ledger uses. Local files no ledger can hold yet
//! are listed by size and modification time and hashed as they are read.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

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

/// When local files are hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashing {
    /// As they are listed, so a ledger can be asked whether it holds them.
    WhenListed,
    /// Only as they are read: no ledger can hold them yet (their table is new), so
    /// hashing them first would read each twice.
    WhenRead,
}

/// What an extract was known by when it was listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// Its content's fingerprint: `sha256:<hex>`, or `etag:<etag>` (`size-mtime:` where a
    /// store has no ETags) on object stores.
    Fingerprint(String),
    /// A local file not hashed yet, by its size and modification time; its fingerprint is
    /// the SHA-256 of the bytes its reading reads.
    Unread {
        /// Size in bytes.
        size: u64,
        /// Last modification.
        modified: SystemTime,
    },
}

/// One extract file.
#[derive(Clone)]
pub struct ExtractFile {
    /// The file as users see it: a local path or a full URI.
    pub display: String,
    /// Size in bytes.
    pub size: u64,
    /// What the file was known by when it was listed.
    pub listed: Listed,
    location: Location,
}

impl fmt::Debug for ExtractFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtractFile")
            .field("display", &self.display)
            .field("listed", &self.listed)
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
    /// The fingerprint the file was listed with; None for a local file hashed as it is
    /// read ([`Hashing::WhenRead`]).
    pub fn fingerprint(&self) -> Option<&str> {
        match &self.listed {
            Listed::Fingerprint(fingerprint) => Some(fingerprint),
            Listed::Unread { .. } => None,
        }
    }

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
                        .fingerprint()
                        .and_then(|listed| listed.strip_prefix("etag:"))
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
                if !is_listed_version(self.fingerprint().unwrap_or_default(), &found.meta) {
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

/// Lists the files `pattern` matches, sorted by name, local files hashed as `hashing`
/// says. Relative local patterns are relative to `base_dir`; object store URIs use
/// `storage_options` (plus the usual `AWS_*`, `GOOGLE_*`, `AZURE_*` environment
/// variables) and are known by their ETags.
pub async fn list_files(
    pattern: &str,
    base_dir: &Path,
    storage_options: &HashMap<String, String>,
    hashing: Hashing,
) -> Result<Vec<ExtractFile>> {
    if pattern.contains("://") && !pattern.starts_with("file://") {
        return list_remote(pattern, storage_options).await;
    }
    let pattern = pattern.strip_prefix("file://").unwrap_or(pattern);
    let absolute = base_dir.join(pattern);
    let pattern_text = absolute.to_string_lossy().into_owned();
    tokio::task::spawn_blocking(move || list_local(&pattern_text, hashing))
        .await
        .map_err(|e| Error::storage("local files", e))?
}

fn list_local(pattern: &str, hashing: Hashing) -> Result<Vec<ExtractFile>> {
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
        let unread = match hashing {
            Hashing::WhenRead => {
                size_and_modified(&path).map_err(|e| Error::storage(&display, e))?
            }
            Hashing::WhenListed => None,
        };
        let (size, listed) = match unread {
            Some((size, modified)) => (size, Listed::Unread { size, modified }),
            None => {
                let (size, digest) = sha256_file(&path).map_err(|e| Error::storage(&display, e))?;
                (size, Listed::Fingerprint(format!("sha256:{digest}")))
            }
        };
        files.push(ExtractFile {
            display,
            size,
            listed,
            location: Location::Local(path),
        });
    }
    files.sort_by(|a, b| a.display.cmp(&b.display));
    Ok(files)
}

/// The size and last modification of the file at `path`; None where the platform does
/// not record modification times.
pub(crate) fn size_and_modified(path: &Path) -> std::io::Result<Option<(u64, SystemTime)>> {
    let metadata = std::fs::metadata(path)?;
    Ok(metadata
        .modified()
        .ok()
        .map(|modified| (metadata.len(), modified)))
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
            listed: Listed::Fingerprint(remote_fingerprint(&meta)),
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
        let pattern = "crm/accounts_*.csv";
        let files = list_files(pattern, dir.path(), &HashMap::new(), Hashing::WhenListed)
            .await
            .unwrap();
        let names: Vec<&str> = files
            .iter()
            .map(|f| f.display.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["accounts_1.csv", "accounts_2.csv"]);
        assert_eq!(
            files[0].fingerprint(),
            Some("sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb")
        );
        assert_eq!(files[0].size, 1);

        // Files hashed as they are read are listed by size and modification time.
        let unread = list_files(pattern, dir.path(), &HashMap::new(), Hashing::WhenRead)
            .await
            .unwrap();
        let first = dir.path().join("crm/accounts_1.csv");
        let modified = std::fs::metadata(&first).unwrap().modified().unwrap();
        assert_eq!(unread[0].listed, Listed::Unread { size: 1, modified });
        assert_eq!(unread[0].fingerprint(), None);
        assert_eq!(unread[1].display, files[1].display);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("exports/a%20b*.csv"), "exports/a b*.csv");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
