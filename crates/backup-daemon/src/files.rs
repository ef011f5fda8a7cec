//! Files the daemon keeps in the data dir: the admin token (`admin.token`) and `daemon.json`,
//! which tells CLI verbs where the running daemon's admin API is. Both are private (mode
//! 0600): the token grants the whole admin API, and `daemon.json` says where to find it.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Name of the running-daemon file inside the data dir.
pub const DAEMON_FILE: &str = "daemon.json";

/// Read the admin token from `path`, generating it on first start (32 random bytes from
/// `/dev/urandom`, hex encoded, file mode 0600). An existing file that group or others may
/// access is made private first, with a warning; when that fails, the daemon does not start.
pub fn load_or_create_token(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            make_private(path)?;
            let token = text.trim().to_string();
            if token.is_empty() {
                bail!("token file {} is empty", path.display());
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = random_hex(32)?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .with_context(|| format!("creating token file {}", path.display()))?;
            file.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing token file {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated admin token");
            Ok(token)
        }
        Err(e) => Err(e).with_context(|| format!("reading token file {}", path.display())),
    }
}

/// Clear the group and other permission bits of the token file at `path`, if any are set.
fn make_private(path: &Path) -> Result<()> {
    let changed = store_core::fsutil::make_private(path, store_core::fsutil::FILE_MODE)
        .with_context(|| {
            format!(
                "token file {} is open to group or others and cannot be made private; \
                 fix its permissions (chmod 600) and start again",
                path.display()
            )
        })?;
    if changed {
        tracing::warn!(
            path = %path.display(),
            "the token file was open to group or others; made private (0600)"
        );
    }
    Ok(())
}

/// Read the admin token without creating it.
pub fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading token file {}", path.display()))?;
    Ok(text.trim().to_string())
}

fn random_hex(n_bytes: usize) -> Result<String> {
    let mut bytes = vec![0u8; n_bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What `daemon.json` holds while a daemon runs on the data dir.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonFile {
    /// The daemon's process id.
    pub pid: u32,
    /// Where its admin API listens.
    pub admin: SocketAddr,
    /// The token file it uses.
    pub token_file: PathBuf,
}

impl DaemonFile {
    /// Write `<data_dir>/daemon.json`, mode 0600, durably: a temporary file, fsynced, renamed
    /// in, and the data dir fsynced.
    pub fn write(&self, data_dir: &Path) -> Result<()> {
        let path = data_dir.join(DAEMON_FILE);
        let json = serde_json::to_vec_pretty(self).context("encoding daemon.json")?;
        store_core::fsutil::write_file_atomically(&path, &json)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Read `<data_dir>/daemon.json`, if present and well formed.
    pub fn read(data_dir: &Path) -> Option<DaemonFile> {
        let bytes = std::fs::read(data_dir.join(DAEMON_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Remove `<data_dir>/daemon.json`, if it is ours.
    pub fn remove(data_dir: &Path) {
        if DaemonFile::read(data_dir).is_some_and(|f| f.pid == std::process::id()) {
            let _ = std::fs::remove_file(data_dir.join(DAEMON_FILE));
        }
    }

    /// Whether the process is still alive (always assumed on systems without `/proc`).
    pub fn pid_alive(&self) -> bool {
        if cfg!(target_os = "linux") {
            Path::new("/proc").join(self.pid.to_string()).exists()
        } else {
            true
        }
    }
}
