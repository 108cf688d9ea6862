//! Persistence: the whole state as one JSON document, replaced atomically (write a temporary
//! file, fsync, rename over the old one, fsync the directory). A crash leaves either the old or
//! the new document, never a mix.

use std::{
    fs::{self, File},
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use crate::model::{State, STATE_VERSION};

/// Persistence failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The state file under `--state-dir`.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Uses (and creates) `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::Io { what: "creating", path: dir.into(), source })?;
        Ok(Self { dir: dir.into() })
    }

    fn path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The saved state, or `None` on first start.
    pub fn load(&self) -> Result<Option<State>, StoreError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { what: "reading", path, source }),
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { path, source })?;
        Ok(Some(state))
    }

    /// Replaces the saved state atomically.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let path = self.path();
        let tmp = self.dir.join("state.json.tmp");
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { what, path, source }
        };
        let mut doc = state.clone();
        doc.version = STATE_VERSION;
        let bytes = serde_json::to_vec_pretty(&doc).expect("state serialises");
        // The daemon's alone: it holds the environment sandboxes' commands run with.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("creating", &tmp))?;
        let _ = f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600));
        f.write_all(&bytes).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io("renaming to", &path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io("syncing", &self.dir))?;
        Ok(())
    }
}
