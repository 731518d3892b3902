//! The configured artifact stores, built from URLs, and the one rule about locations: the
//! registry reads and writes only under a configured store's base URL.
//!
//! Stores are `object_store` instances: `file:///dir` (a [`LocalFileSystem`] rooted at `dir`),
//! `memory://`, `s3://bucket/prefix`, `gs://bucket/prefix` and `az://container/prefix`; a URL's
//! path becomes a [`PrefixStore`] so keys are always relative to the base. Cloud credentials
//! come from each provider's usual environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`);
//! options are checked against the provider's known keys here, because
//! `object_store::parse_url_opts` silently ignores unknown ones.
//!
//! A location is a store's base URL followed by `/<relative key prefix>`. [`StoreRegistry::resolve`]
//! accepts a location only when it starts with a configured base and the rest is a valid
//! relative path ([`super::paths`]); everything else (`http://…`, another `file://` directory,
//! an unconfigured bucket) is "outside the stores" and is never fetched.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use url::Url;

use super::ArtifactError;
use super::paths::RelPath;

/// The name of the store uploads go to.
pub const DEFAULT_STORE: &str = "default";

/// How to reach the stores: URLs plus provider options.
#[derive(Debug, Clone, Default)]
pub struct StoresConfig {
    /// The upload store's URL.
    pub default_url: String,
    /// Further stores by name, for registering files that already sit there.
    pub named: Vec<(String, String)>,
    /// Provider options as `key=value` (`aws_…`, `google_…`, `azure_…`), applied to every store
    /// of that provider.
    pub options: Vec<(String, String)>,
    /// S3-compatible endpoint (`http://127.0.0.1:9000`); path-style requests are the default.
    pub s3_endpoint: Option<String>,
    pub s3_allow_http: bool,
    pub s3_region: Option<String>,
}

/// One configured store.
#[derive(Debug, Clone)]
pub struct ConfiguredStore {
    pub name: String,
    /// The normalized base URL locations start with.
    pub base: String,
    pub store: Arc<dyn ObjectStore>,
}

/// Scheme of store-relative locations: `store://<store name>/<key>`.
pub const STORE_SCHEME: &str = "store://";

impl ConfiguredStore {
    /// The location string of `prefix` (a relative key prefix, already encoded) in this store,
    /// as recorded in manifests and shown to callers. A local directory's location names the
    /// store, not the directory (`store://default/models/m/…`): an absolute server path tells a
    /// caller about the machine and breaks when the data directory moves. Object stores keep
    /// their URL (`s3://bucket/…`), which is what their users look for.
    pub fn location_of(&self, prefix: &Path) -> String {
        if self.base.starts_with("file:") {
            return format!("{STORE_SCHEME}{}/{}", self.name, prefix.as_ref());
        }
        if self.base.ends_with('/') {
            format!("{}{}", self.base, prefix.as_ref())
        } else if prefix.as_ref().is_empty() {
            self.base.clone()
        } else {
            format!("{}/{}", self.base, prefix.as_ref())
        }
    }
}

/// A location inside a configured store.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub store: ConfiguredStore,
    /// Key prefix inside the store.
    pub prefix: Path,
}

#[derive(Debug, Clone)]
pub struct StoreRegistry {
    stores: BTreeMap<String, ConfiguredStore>,
}

impl StoreRegistry {
    /// Builds every configured store; any bad URL or option key fails start-up.
    pub fn build(config: &StoresConfig) -> Result<Self, ArtifactError> {
        check_options(&config.options)?;
        let mut stores = BTreeMap::new();
        let all = std::iter::once((DEFAULT_STORE.to_string(), config.default_url.clone()))
            .chain(config.named.iter().cloned());
        for (name, url) in all {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ArtifactError::Config(format!(
                    "artifact store name '{name}' must be letters, digits, '-' or '_'"
                )));
            }
            let store = build_store(&name, &url, config)?;
            if stores.insert(name.clone(), store).is_some() {
                return Err(ArtifactError::Config(format!(
                    "artifact store '{name}' is configured twice"
                )));
            }
        }
        Ok(StoreRegistry { stores })
    }

    /// A registry with one in-memory default store (for wiring that has no configuration).
    pub fn in_memory() -> Self {
        let store = ConfiguredStore {
            name: DEFAULT_STORE.into(),
            base: "memory:///".into(),
            store: Arc::new(InMemory::new()),
        };
        StoreRegistry {
            stores: BTreeMap::from([(DEFAULT_STORE.to_string(), store)]),
        }
    }

    pub fn get(&self, name: &str) -> Result<&ConfiguredStore, ArtifactError> {
        self.stores
            .get(name)
            .ok_or_else(|| ArtifactError::UnknownStore(name.to_string()))
    }

    pub fn default_store(&self) -> Result<&ConfiguredStore, ArtifactError> {
        self.get(DEFAULT_STORE)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.stores.keys().map(String::as_str)
    }

    /// The store and key prefix of `location`, or `None` when it lies outside every store.
    /// The longest matching base wins, so nested bases resolve to the most specific store.
    pub fn resolve(&self, location: &str) -> Option<Resolved> {
        if let Some(named) = location.strip_prefix(STORE_SCHEME) {
            let (name, rest) = named.split_once('/').unwrap_or((named, ""));
            let store = self.stores.get(name)?;
            return Some(Resolved {
                store: store.clone(),
                prefix: encoded_prefix(rest)?,
            });
        }
        let mut best: Option<Resolved> = None;
        for store in self.stores.values() {
            let Some(rest) = relative_to(&store.base, location) else {
                continue;
            };
            let Some(prefix) = encoded_prefix(rest) else {
                continue;
            };
            if best
                .as_ref()
                .is_none_or(|b| b.store.base.len() < store.base.len())
            {
                best = Some(Resolved {
                    store: store.clone(),
                    prefix,
                });
            }
        }
        best
    }
}

/// The key prefix a location's tail names. Locations hold keys in their encoded form (what
/// [`ConfiguredStore::location_of`] writes), so the tail is parsed as an encoded path, never
/// encoded again: `models/team%2Fchurn` is the key that upload wrote for model `team/churn`,
/// and encoding it once more would look for `team%252Fchurn`. `..`, `.` and empty segments are
/// refused as everywhere else.
fn encoded_prefix(rest: &str) -> Option<Path> {
    if rest.is_empty() {
        return Some(Path::default());
    }
    RelPath::parse(rest).ok()?;
    Path::parse(rest).ok()
}

/// What follows `base` in `location`, when `location` is `base` or below it.
fn relative_to<'a>(base: &str, location: &'a str) -> Option<&'a str> {
    let rest = location.strip_prefix(base)?;
    if base.ends_with('/') {
        return Some(rest);
    }
    if rest.is_empty() {
        return Some(rest);
    }
    rest.strip_prefix('/')
}

fn check_options(options: &[(String, String)]) -> Result<(), ArtifactError> {
    for (key, _) in options {
        let k = key.to_ascii_lowercase();
        let known = if k.starts_with("aws_") {
            AmazonS3ConfigKey::from_str(&k).is_ok()
        } else if k.starts_with("google_") {
            GoogleConfigKey::from_str(&k).is_ok()
        } else if k.starts_with("azure_") {
            AzureConfigKey::from_str(&k).is_ok()
        } else {
            false
        };
        if !known {
            return Err(ArtifactError::Config(format!(
                "unknown artifact store option '{key}' (use object_store's aws_*, google_* or azure_* keys)"
            )));
        }
    }
    Ok(())
}

fn scoped<'a>(
    options: &'a [(String, String)],
    prefix: &'a str,
) -> impl Iterator<Item = (String, &'a str)> {
    options
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .filter(move |(k, _)| k.starts_with(prefix))
}

fn build_store(
    name: &str,
    raw_url: &str,
    config: &StoresConfig,
) -> Result<ConfiguredStore, ArtifactError> {
    let bad =
        |why: String| ArtifactError::Config(format!("artifact store '{name}' ({raw_url}): {why}"));
    let url = Url::parse(raw_url).map_err(|e| bad(e.to_string()))?;
    let key_prefix = url.path().trim_matches('/').to_string();
    let object_store_err = |e: object_store::Error| bad(e.to_string());
    let (store, base, prefixed): (Arc<dyn ObjectStore>, String, bool) = match url.scheme() {
        "file" => {
            let dir = url
                .to_file_path()
                .map_err(|_| bad("not an absolute local path".into()))?;
            std::fs::create_dir_all(&dir).map_err(|e| bad(e.to_string()))?;
            let dir = dir.canonicalize().map_err(|e| bad(e.to_string()))?;
            let store = LocalFileSystem::new_with_prefix(&dir).map_err(object_store_err)?;
            let base = Url::from_directory_path(&dir)
                .map_err(|_| bad("not an absolute local path".into()))?;
            let base = base.as_str().trim_end_matches('/').to_string();
            (Arc::new(store), base, false)
        }
        "memory" => (Arc::new(InMemory::new()), normalized_base(&url), true),
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env().with_url(raw_url);
            for (k, v) in scoped(&config.options, "aws_") {
                if let Ok(key) = AmazonS3ConfigKey::from_str(&k) {
                    b = b.with_config(key, v);
                }
            }
            if let Some(endpoint) = &config.s3_endpoint {
                b = b.with_endpoint(endpoint);
            }
            if config.s3_allow_http {
                b = b.with_allow_http(true);
            }
            if let Some(region) = &config.s3_region {
                b = b.with_region(region);
            }
            (
                Arc::new(b.build().map_err(object_store_err)?),
                normalized_base(&url),
                true,
            )
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(raw_url);
            for (k, v) in scoped(&config.options, "google_") {
                if let Ok(key) = GoogleConfigKey::from_str(&k) {
                    b = b.with_config(key, v);
                }
            }
            (
                Arc::new(b.build().map_err(object_store_err)?),
                normalized_base(&url),
                true,
            )
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut b = MicrosoftAzureBuilder::from_env().with_url(raw_url);
            for (k, v) in scoped(&config.options, "azure_") {
                if let Ok(key) = AzureConfigKey::from_str(&k) {
                    b = b.with_config(key, v);
                }
            }
            (
                Arc::new(b.build().map_err(object_store_err)?),
                normalized_base(&url),
                true,
            )
        }
        other => {
            return Err(bad(format!(
                "unsupported scheme '{other}' (use file, memory, s3, gs or az)"
            )));
        }
    };
    let store: Arc<dyn ObjectStore> = if prefixed && !key_prefix.is_empty() {
        Arc::new(PrefixStore::new(store, key_prefix.as_str()))
    } else {
        store
    };
    Ok(ConfiguredStore {
        name: name.to_string(),
        base,
        store,
    })
}

/// `scheme://authority/path` without a trailing slash; with an empty path, the slash stays so
/// `s3://bucket` and `memory://` read as `s3://bucket/` and `memory:///`.
fn normalized_base(url: &Url) -> String {
    let path = url.path().trim_matches('/');
    let authority = &url[url::Position::BeforeUsername..url::Position::AfterPort];
    if path.is_empty() {
        format!("{}://{}/", url.scheme(), authority)
    } else {
        format!("{}://{}/{}", url.scheme(), authority, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(dir: &std::path::Path) -> StoreRegistry {
        let url = Url::from_directory_path(dir)
            .map(|u| u.to_string())
            .unwrap_or_default();
        StoreRegistry::build(&StoresConfig {
            default_url: url,
            named: vec![("mem".into(), "memory://".into())],
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn locations_resolve_only_inside_configured_stores() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let reg = registry(tmp.path());
        let base = reg
            .default_store()
            .map(|s| s.base.clone())
            .unwrap_or_default();
        let inside = reg.resolve(&format!("{base}/models/m/1")).map(|r| r.prefix);
        assert_eq!(inside.map(|p| p.to_string()), Some("models/m/1".into()));
        assert!(reg.resolve(&format!("{base}/../x")).is_none());
        assert!(reg.resolve(&format!("{base}x/y")).is_none());
        assert!(reg.resolve("file:///etc/passwd").is_none());
        assert!(reg.resolve("http://169.254.169.254/latest").is_none());
        assert!(reg.resolve("s3://other-bucket/x").is_none());
        assert!(reg.resolve("memory:///a/b").is_some());
    }

    #[test]
    fn local_locations_name_the_store_and_round_trip_encoded_keys() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let reg = registry(tmp.path());
        let store = reg.default_store().unwrap_or_else(|e| panic!("{e}"));
        // What an upload for model `team/churn` writes: the slash is encoded in the segment.
        let prefix = Path::from_iter(["models", "team/churn", "u1"]);
        let location = store.location_of(&prefix);
        assert_eq!(location, "store://default/models/team%2Fchurn/u1");
        assert!(!location.contains(&tmp.path().display().to_string()));
        let back = reg.resolve(&location).map(|r| r.prefix);
        assert_eq!(back, Some(prefix.clone()), "encoded once, not twice");
        // The same key through the store's own URL (how older manifests recorded it).
        let by_url = reg.resolve(&format!("{}/{}", store.base, prefix.as_ref()));
        assert_eq!(by_url.map(|r| r.prefix), Some(prefix));
        assert!(reg.resolve("store://default/../x").is_none());
        assert!(reg.resolve("store://nope/models").is_none());
        assert!(reg.resolve("store://mem/a/b").is_some());
    }

    #[test]
    fn unknown_option_keys_and_schemes_are_refused() {
        let bad_key = StoreRegistry::build(&StoresConfig {
            default_url: "memory://".into(),
            options: vec![("aws_secret_acess_key".into(), "x".into())],
            ..Default::default()
        });
        assert!(matches!(bad_key, Err(ArtifactError::Config(_))));
        let bad_scheme = StoreRegistry::build(&StoresConfig {
            default_url: "http://example.com/x".into(),
            ..Default::default()
        });
        assert!(matches!(bad_scheme, Err(ArtifactError::Config(_))));
    }

    #[test]
    fn s3_bases_keep_bucket_and_prefix() {
        let reg = StoreRegistry::build(&StoresConfig {
            default_url: "s3://bucket/pre/fix/".into(),
            s3_endpoint: Some("http://127.0.0.1:1".into()),
            s3_allow_http: true,
            s3_region: Some("us-east-1".into()),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let base = reg
            .default_store()
            .map(|s| s.base.clone())
            .unwrap_or_default();
        assert_eq!(base, "s3://bucket/pre/fix");
        assert!(reg.resolve("s3://bucket/pre/fix/models/a").is_some());
        assert!(reg.resolve("s3://bucket/pre/models/a").is_none());
    }
}
