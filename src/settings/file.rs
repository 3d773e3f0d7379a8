//! The config file on disk: read only when it is a regular file of sane size, without ever
//! blocking on what sits at its path (a FIFO, a device); replaced atomically; and the temp
//! files of writes that a crash interrupted swept away.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Larger than any config: the shipped one with every key is 10 KiB.
pub const MAX_SIZE: u64 = 1024 * 1024;

/// Reads the config's text, or says why what is at `path` is not a config file.
pub fn read(path: &Path) -> Result<String, String> {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "the file is missing".to_owned(),
            _ => format!("cannot open the file: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(format!("the config path is {what}"));
    }
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.len() as u64 > MAX_SIZE {
        return Err(format!(
            "the file is over {} KiB: not a config file",
            MAX_SIZE / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("the file is not UTF-8 text: {e}"))
}

/// The temp file a write of this process goes through: hidden, beside the file (a rename
/// is atomic only within one file system), named by the pid so leftovers can be told apart.
fn temp_path(path: &Path, pid: u32) -> PathBuf {
    folder(path).join(format!(".{}.{pid}.tmp", file_name(path)))
}

/// Replaces `path` with `text` atomically: a temporary file in the same folder, flushed to
/// disk, given the old file's permissions, then renamed over it.
pub fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let temp = temp_path(path, std::process::id());
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        if let Ok(meta) = fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.sync_all()?;
        fs::rename(&temp, path)?;
        // The rename itself is durable only once the folder is.
        fs::File::open(folder(path))?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Removes the temp files that writes killed mid-way left beside `path`: those of processes
/// that no longer run, and any of this pid (a previous process that had it). Returns them.
pub fn sweep_leftovers(path: &Path) -> Vec<PathBuf> {
    let prefix = format!(".{}.", file_name(path));
    let Ok(entries) = fs::read_dir(folder(path)) else {
        return Vec::new();
    };
    let own = std::process::id();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid != own && Path::new(&format!("/proc/{pid}")).exists();
        if !alive && entry.file_type().is_ok_and(|t| t.is_file()) {
            let leftover = entry.path();
            if fs::remove_file(&leftover).is_ok() {
                removed.push(leftover);
            }
        }
    }
    removed
}

fn folder(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_of_sane_size_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("visiond.toml");
        assert_eq!(read(&path).unwrap_err(), "the file is missing");
        fs::create_dir(&path).unwrap();
        assert!(read(&path).unwrap_err().contains("directory"));
        fs::remove_dir(&path).unwrap();
        let fifo = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(read(&path).unwrap_err().contains("not a regular file"));
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        assert!(read(&path).unwrap_err().contains("not a regular file"));
        fs::remove_file(&path).unwrap();
        fs::write(&path, vec![b'#'; MAX_SIZE as usize + 1]).unwrap();
        assert!(read(&path).unwrap_err().contains("over 1024 KiB"));
        fs::write(&path, "[input]\nfps = 5\n").unwrap();
        assert_eq!(read(&path).unwrap(), "[input]\nfps = 5\n");
    }

    #[test]
    fn leftovers_of_dead_writers_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("visiond.toml");
        fs::write(&path, "").unwrap();
        // pid 1 is alive everywhere; u32::MAX - 1 never is.
        let live = temp_path(&path, 1);
        let dead = temp_path(&path, u32::MAX - 1);
        let mine = temp_path(&path, std::process::id());
        let unrelated = dir.path().join(".other.toml.7.tmp");
        for file in [&live, &dead, &mine, &unrelated] {
            fs::write(file, "x").unwrap();
        }
        let mut removed = sweep_leftovers(&path);
        removed.sort();
        let mut expected = vec![dead.clone(), mine.clone()];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(live.exists() && unrelated.exists() && path.exists());
    }
}
