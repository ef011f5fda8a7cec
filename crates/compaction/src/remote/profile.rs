//! Credentials from the standard AWS shared credentials file, for when the environment names
//! none: `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`, profile `AWS_PROFILE`, else
//! `default`; the keys `aws_access_key_id`, `aws_secret_access_key` and, if present,
//! `aws_session_token`. (The S3 client reads the environment variables and the instance or
//! container role itself, but not this file.)

use std::path::PathBuf;

/// Keys read from a profile.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ProfileKeys {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: Option<String>,
}

impl std::fmt::Debug for ProfileKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileKeys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The keys of `profile` in the text of a credentials file (INI: `[profile]` headers,
/// `key = value` lines, `#` and `;` comments), if it has both keys.
pub(crate) fn parse(text: &str, profile: &str) -> Option<ProfileKeys> {
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().to_string();
        match key.trim() {
            "aws_access_key_id" => id = Some(value),
            "aws_secret_access_key" => secret = Some(value),
            "aws_session_token" => token = Some(value),
            _ => {}
        }
    }
    Some(ProfileKeys {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
    })
}

/// The keys of the shared credentials file, when the environment has no access key and the
/// file has the profile.
pub(crate) fn from_shared_file() -> Option<ProfileKeys> {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        return None;
    }
    let path = match std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".aws/credentials"),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    parse(&text, &profile)
}

#[cfg(test)]
mod tests {
    use super::parse;

    const FILE: &str = "# shared credentials\n[default]\naws_access_key_id = AKIADEFAULT\n\
        aws_secret_access_key=secret-default\n\n[backup]\n; the off-site role\n\
        aws_access_key_id = AKIABACKUP\naws_secret_access_key = secret-backup\n\
        aws_session_token = token-backup\n[half]\naws_access_key_id = AKIAHALF\n";

    #[test]
    fn profiles_are_read_by_name_and_incomplete_ones_ignored() {
        let default = parse(FILE, "default").unwrap();
        assert_eq!(
            (
                default.access_key_id.as_str(),
                default.secret_access_key.as_str()
            ),
            ("AKIADEFAULT", "secret-default")
        );
        assert_eq!(default.session_token, None);
        let backup = parse(FILE, "backup").unwrap();
        assert_eq!(backup.access_key_id, "AKIABACKUP");
        assert_eq!(backup.session_token.as_deref(), Some("token-backup"));
        assert_eq!(parse(FILE, "half"), None);
        assert_eq!(parse(FILE, "missing"), None);
    }
}
