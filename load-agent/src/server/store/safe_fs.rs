//! File operations that never follow a symbolic link: the agent runs as root on hosts where others may write into
//! its data directory, so a link planted there must not redirect a read or a write elsewhere.
//!
//! Files are opened with `O_NOFOLLOW` (a link as the last component fails with `ELOOP`) and `O_NONBLOCK` (a planted
//! FIFO cannot hang the agent), then checked to be regular files through the open descriptor. New files are created
//! with `O_EXCL` under a random name, so neither a planted link nor a stale temporary file is ever written through.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Flags of every open: the last component must not be a link, and opening must not wait (FIFOs, devices).
const NO_LINK_NO_WAIT: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK;

/// Suffix of the temporary files of atomic writes (their names also start with a dot, so listings skip them).
pub const TEMPORARY_SUFFIX: &str = ".tmp";

fn not_regular(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a regular file", path.display()))
}

/// True when `error` is what opening a symbolic link with `O_NOFOLLOW` gives.
pub fn is_link_error(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::ELOOP)
}

/// Opens an existing regular file for reading; a link, a FIFO or a folder is an error.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().read(true).custom_flags(NO_LINK_NO_WAIT).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular(path));
    }
    Ok(file)
}

/// The whole content of a regular file, read without following a link.
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// True when `path` is a real folder (not a link to one).
pub fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Fails unless `dir` is a real folder: writes never go through a linked folder.
pub fn ensure_real_dir(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is a symbolic link: not followed", dir.display()),
        ));
    }
    if !meta.is_dir() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a folder", dir.display())));
    }
    Ok(())
}

/// Creates a new file that did not exist (`O_EXCL`: not even as a dangling link).
fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o644).custom_flags(NO_LINK_NO_WAIT).open(path)
}

/// Writes through a temporary file with a random name, fsync and rename (then fsyncs the folder): readers never
/// see half a file, and a link at the final name is replaced, not followed. A failed write leaves the old file as
/// it was and removes its temporary file (which, on a full disk, frees its space again).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| io::Error::other("no file name"))?.to_string_lossy();
    let dir = path.parent().unwrap_or(Path::new("."));
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(".{name}.{:016x}{TEMPORARY_SUFFIX}", rand::random::<u64>()));
        match create_new(&tmp) {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    let written = file.write_all(bytes).and_then(|()| file.sync_all()).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Makes the rename itself durable; not every platform can open a folder, so failure is not an error.
    let _ = File::open(dir).and_then(|d| d.sync_all());
    Ok(())
}

/// Appends `bytes` to a regular file (created if missing), all or nothing: a failed append (a full disk) is cut
/// off again, so the file never ends in a torn line.
pub fn append_all_or_nothing(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().append(true).create(true).mode(0o644).custom_flags(NO_LINK_NO_WAIT).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(path));
    }
    let before = meta.len();
    if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_data()) {
        // Shrinking needs no space, so this works on a full disk too.
        let _ = file.set_len(before).and_then(|()| file.sync_data());
        return Err(e);
    }
    Ok(())
}

/// Renames `path` (a file that could not be read as what it should be, or a link) to `<name>.corrupt-<unix time>`
/// next to it, so it is kept for inspection and never overwritten. Returns the new path.
pub fn move_aside(path: &Path, unix_s: u64) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| io::Error::other("no file name"))?.to_string_lossy();
    for attempt in 0..100u32 {
        let suffix = if attempt == 0 { String::new() } else { format!("-{attempt}") };
        let aside = path.with_file_name(format!("{name}.corrupt-{unix_s}{suffix}"));
        // A rename would replace an earlier corrupt copy: pick a free name instead.
        if fs::symlink_metadata(&aside).is_err() {
            fs::rename(path, &aside)?;
            return Ok(aside);
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("no free name to move {} aside", path.display())))
}

/// What is wrong with a JSON text, without serde_json's message (which may quote the content).
pub fn json_error_kind(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "valid JSON of the wrong shape",
        serde_json::error::Category::Eof => "cut short",
    }
}

/// A serde_json error described by its kind and position only.
pub fn describe_json_error(error: &serde_json::Error) -> String {
    format!("{} at line {} column {}", json_error_kind(error), error.line(), error.column())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn atomic_writes_replace_links_instead_of_following_them() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        // The old fixed temporary name, and the final name, both planted as links.
        symlink(&victim, dir.path().join("status.json.tmp")).unwrap();
        symlink(&victim, &path).unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(!fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<String> =
            fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
        assert_eq!(names.len(), 2, "no temporary left: {names:?}");
    }

    #[test]
    fn reads_and_appends_refuse_links() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("windows.jsonl");
        symlink(&victim, &link).unwrap();
        assert!(is_link_error(&read_regular(&link).unwrap_err()));
        assert!(is_link_error(&append_all_or_nothing(&link, b"x\n").unwrap_err()));
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        fs::create_dir(dir.path().join("folder")).unwrap();
        assert!(read_regular(&dir.path().join("folder")).is_err());
        symlink(outside.path(), dir.path().join("linked")).unwrap();
        assert!(ensure_real_dir(&dir.path().join("linked")).is_err());
        assert!(ensure_real_dir(dir.path()).is_ok());
    }

    #[test]
    fn files_moved_aside_keep_their_bytes_under_a_free_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        fs::write(&path, "garbage 1").unwrap();
        let first = move_aside(&path, 1000).unwrap();
        fs::write(&path, "garbage 2").unwrap();
        let second = move_aside(&path, 1000).unwrap();
        assert_eq!(first.file_name().unwrap(), "status.json.corrupt-1000");
        assert_eq!(second.file_name().unwrap(), "status.json.corrupt-1000-1");
        assert_eq!(fs::read(&first).unwrap(), b"garbage 1");
        assert_eq!(fs::read(&second).unwrap(), b"garbage 2");
        assert!(!path.exists());
    }

    #[test]
    fn json_errors_do_not_quote_the_content() {
        let error = serde_json::from_str::<u64>("\"secret-token\"").unwrap_err();
        let text = describe_json_error(&error);
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("line 1"), "{text}");
    }
}
